// The playground: sends the form to GET /generate and shows the answer, or the API's error messages
// next to the fields they name. The API does all validation (the form has novalidate), so what the
// page says is what the API says.
"use strict";

const FIELDS = ["model", "count", "seed", "temperature", "top_k", "prefix", "max_length", "novel_only"];
const TOKEN_KEY = "namegen-token";  // sessionStorage: gone when the tab closes

// The token field appears once the server asks for a token (401/403), or when this tab has one.
function tokenHeaders(form) {
  const typed = form.elements.token.value.trim();
  if (typed) sessionStorage.setItem(TOKEN_KEY, typed);
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askForToken(form) {
  document.getElementById("token-field").hidden = false;
  form.elements.token.focus();
}

// The form's values as query parameters; empty fields are left out (the API's defaults apply).
function parameters(form) {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const input = form.elements[name];
    if (input.type === "checkbox") {
      if (input.checked) params.set(name, "true");
    } else if (input.value !== "") {
      params.set(name, input.value);
    }
  }
  return params;
}

// Seeds go up to 2^63, beyond a JS number's exact integers: keep the seed's digits as text (from
// the parser's source text where the browser offers it, else from the answer's text).
function parseAnswer(text) {
  const answer = JSON.parse(text, (key, value, context) =>
    key === "seed" && context && context.source ? context.source : value);
  const digits = /^\{"model":\{[^{}]*\},"seed":(\d+),/.exec(text);
  if (answer && typeof answer.seed === "number" && digits) answer.seed = digits[1];
  return answer;
}

function clearErrors() {
  for (const el of document.querySelectorAll(".error")) el.textContent = "";
  for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

function showErrors(status, answer) {
  const items = answer && Array.isArray(answer.detail) ? answer.detail : [{ field: null, message: `HTTP ${status}` }];
  for (const item of items) {
    const field = FIELDS.includes(item.field) ? item.field : "form";
    const where = document.getElementById(`error-${field}`);
    const text = field === "form" && item.field ? `${item.field}: ${item.message}` : item.message;
    where.textContent = where.textContent ? `${where.textContent}; ${text}` : text;
    if (field !== "form") document.forms.generate.elements[field].setAttribute("aria-invalid", "true");
  }
  if (status === 503) {
    document.getElementById("error-form").textContent += " (the service says: try again shortly)";
  }
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  return span;
}

function showNames(answer, params) {
  const list = document.getElementById("names");
  list.replaceChildren();
  const logprobs = answer.names.map((n) => n.logprob);
  // The bar: likelihood relative to this list, from a sliver for its least likely name to full.
  const high = Math.max(...logprobs), low = Math.min(...logprobs) - 0.1 * (high - Math.min(...logprobs) || 1);
  for (const n of answer.names) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = n.name === "" ? "(empty)" : n.name;
    const bar = document.createElement("meter");
    bar.min = low;
    bar.max = high;
    bar.value = n.logprob;
    bar.title = `log-probability ${n.logprob.toFixed(3)}`;
    const lp = document.createElement("span");
    lp.className = "logprob";
    lp.textContent = n.logprob.toFixed(2);
    item.append(name, bar, lp, n.novel ? badge("novel", "novel") : badge("in corpus", "known"));
    if (n.cut) item.append(badge("cut", "cut"));
    list.append(item);
  }
  const count = answer.names.length;
  document.getElementById("result-count").textContent =
    `${count} name${count === 1 ? "" : "s"}` + (answer.exhausted ? ` (of ${answer.requested}: novel_only ran out of tries)` : "");
  document.getElementById("result-model").textContent = `${answer.model.name} ${answer.model.version}`;
  document.getElementById("seed-used").textContent = answer.seed;
  params.set("seed", answer.seed);  // the line repeats this answer, also when the seed was drawn
  const url = `${location.origin}/generate?${params}`;
  const auth = sessionStorage.getItem(TOKEN_KEY) ? ` -H "Authorization: Bearer $NAMEGEN_TOKEN"` : "";
  document.getElementById("curl").textContent = `curl -s${auth} '${url}'`;
  document.getElementById("results").hidden = false;
}

async function generate(event) {
  event.preventDefault();
  const form = event.target;
  const button = document.getElementById("submit");
  const params = parameters(form);
  clearErrors();
  button.disabled = true;
  try {
    const response = await fetch(`/generate?${params}`, { headers: { Accept: "application/json", ...tokenHeaders(form) } });
    if (response.status === 401 || response.status === 403) askForToken(form);
    const text = await response.text();
    let answer = null;
    try { answer = parseAnswer(text); } catch { /* not JSON: shown by status below */ }
    if (response.ok && answer) showNames(answer, params);
    else showErrors(response.status, answer);
  } catch (err) {
    document.getElementById("error-form").textContent = `The service did not answer (${err.message}).`;
  } finally {
    button.disabled = false;
  }
}

async function copyCurl() {
  const line = document.getElementById("curl");
  window.getSelection().selectAllChildren(line);  // selected either way, for a manual copy
  try {
    await navigator.clipboard.writeText(line.textContent);
    document.getElementById("copy").textContent = "copied";
  } catch {
    document.getElementById("copy").textContent = "selected: copy it";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.forms.generate;
  form.addEventListener("submit", generate);
  if (sessionStorage.getItem(TOKEN_KEY)) document.getElementById("token-field").hidden = false;
  document.getElementById("copy").addEventListener("click", copyCurl);
  document.getElementById("keep-seed").addEventListener("click", () => {
    form.elements.seed.value = document.getElementById("seed-used").textContent;
  });
});
