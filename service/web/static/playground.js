// The playground: sends the form to GET /generate and shows the answer, or the API's error messages
// next to the fields they name (all of them at once). The API does all validation (the form has
// novalidate), so what the page says is what the API says. On first load it shows the form's names
// for a fixed example seed, and says so.
"use strict";

const FIELDS = ["model", "count", "seed", "temperature", "top_k", "prefix", "suffix", "contains", "min_length",
  "max_length", "exclude", "case", "unique", "novel_only"];
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

// Old names would read as the answer to the fields now shown: they go as soon as there is an error.
function clearResults() {
  document.getElementById("results").hidden = true;
  document.getElementById("names").replaceChildren();
}

function showErrors(status, answer) {
  clearResults();
  const items = answer && Array.isArray(answer.detail) ? answer.detail : [{ field: null, message: `HTTP ${status}` }];
  for (const item of items) {
    const top = item.field ? String(item.field).split(".")[0] : null;  // exclude.3: the list's fourth name
    const field = FIELDS.includes(top) ? top : "form";
    const where = document.getElementById(`error-${field}`);
    const text = item.field && item.field !== field ? `${item.field}: ${item.message}` : item.message;
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

// The bar: the name's percentile among the real names the model learned from (how typical it is);
// a model published without those figures shows its log-probability per letter instead.
function typicality(n) {
  const bar = document.createElement("meter");
  const text = document.createElement("span");
  text.className = "typical";
  if (n.percentile === null) {
    bar.min = -5; bar.max = 0; bar.value = n.logprob_per_char;
    text.textContent = `${n.logprob_per_char.toFixed(2)} per letter`;
  } else {
    bar.min = 0; bar.max = 100; bar.value = n.percentile;
    text.textContent = `${Math.round(n.percentile)}%`;
  }
  bar.title = n.percentile === null ? `log-probability ${n.logprob.toFixed(3)}, ${text.textContent}`
    : `more typical than ${Math.round(n.percentile)}% of real names (log-probability ${n.logprob.toFixed(3)})`;
  return [bar, text];
}

function showNames(answer, params, example) {
  const list = document.getElementById("names");
  list.replaceChildren();
  for (const n of answer.names) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = n.name === "" ? "(empty)" : n.name;
    const lp = document.createElement("span");
    lp.className = "logprob";
    lp.textContent = n.logprob.toFixed(2);
    item.append(name, ...typicality(n), lp, n.novel ? badge("novel", "novel") : badge("in corpus", "known"));
    if (n.cut) item.append(badge("cut", "cut"));
    list.append(item);
  }
  const count = answer.names.length;
  document.getElementById("result-count").textContent =
    `${count} name${count === 1 ? "" : "s"}` + (answer.exhausted ? ` of ${answer.requested}` : "");
  const note = document.getElementById("note");
  note.textContent = answer.note ? `Fewer names than asked: ${answer.note}. Try looser fields.` : "";
  note.hidden = !answer.note;
  document.getElementById("example").hidden = !example;
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
  await ask(parameters(event.target), false);
}

async function ask(params, example) {
  const form = document.forms.generate;
  const button = document.getElementById("submit");
  clearErrors();
  button.disabled = true;
  try {
    const response = await fetch(`/generate?${params}`, { headers: { Accept: "application/json", ...tokenHeaders(form) } });
    if (response.status === 401 || response.status === 403) askForToken(form);
    const text = await response.text();
    let answer = null;
    try { answer = parseAnswer(text); } catch { /* not JSON: shown by status below */ }
    if (response.ok && answer) showNames(answer, params, example);
    else showErrors(response.status, answer);
  } catch (err) {
    clearResults();
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
  const first = parameters(form);
  first.set("seed", document.getElementById("example-seed").textContent);
  ask(first, true);
});
