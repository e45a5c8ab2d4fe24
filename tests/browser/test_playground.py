"""The playground at / in Chromium, against a real server serving the shipped model."""
from __future__ import annotations

import math
import shlex

import httpx

from browser_helpers import DESKTOP, PHONE

NAMES_JS = """() => [...document.querySelectorAll('#names li')].map(li => ({
  name: li.querySelector('.name').textContent, logprob: li.querySelector('.logprob').textContent,
  bar: li.querySelector('meter').value, typical: li.querySelector('.typical').textContent,
  badges: [...li.querySelectorAll('.badge')].map(b => b.textContent)}))"""
FORM_DEFAULTS = {"count": 10, "unique": "true", "case": "title"}  # what the form sends when left as it is


def fill(page, **fields) -> None:
    for name, value in fields.items():
        if name in ("novel_only", "unique"):
            page.set_checked(f"input[name={name}]", value)
        elif name == "case":
            page.select_option("select[name=case]", value)
        else:
            page.fill(f"input[name={name}]", str(value))


def generate(page) -> list[dict]:
    page.click("#submit")
    page.wait_for_selector("#results:not([hidden]) #names li")
    page.wait_for_selector("#results:not([hidden]) #example[hidden]", state="attached")  # not the first load's
    return page.evaluate(NAMES_JS)


def first_load(page) -> list[dict]:
    page.wait_for_selector("#results:not([hidden]) #names li")
    return page.evaluate(NAMES_JS)


def as_shown(answer: dict) -> list[dict]:
    """What the page should show for an API answer (the bar is the percentile)."""
    return [{"name": n["name"] or "(empty)", "logprob": f"{n['logprob']:.2f}", "bar": n["percentile"],
             "typical": f"{math.floor(n['percentile'] + 0.5)}%",  # JavaScript's Math.round
             "badges": ["novel" if n["novel"] else "in corpus"] + (["cut"] if n["cut"] else [])}
            for n in answer["names"]]


def test_playground_names_equal_the_apis_for_the_same_seed(shipped, open_page, screenshots):
    p = open_page()
    p.page.goto(shipped.url + "/")
    first_load(p.page)
    fields = dict(count=12, seed=20261125, temperature=0.8, top_k=20, prefix="Ka", max_length=9, novel_only=True)
    fill(p.page, **fields)
    shown = generate(p.page)
    api = httpx.get(shipped.url + "/generate", params={**FORM_DEFAULTS, **fields, "novel_only": "true"}).json()
    assert shown == as_shown(api)
    assert len(shown) == 12 and all(n["name"].startswith("Ka") for n in shown)
    assert len({n["name"] for n in shown}) == 12  # unique is on in the form
    assert p.page.text_content("#seed-used") == "20261125"
    assert api["model"]["version"] in p.page.text_content("#result-model")
    assert all(0 <= n["bar"] <= 100 for n in shown)
    assert "more typical than" in p.page.get_attribute("#names li meter", "title")
    p.page.screenshot(path=screenshots / "playground-desktop.png", full_page=True)
    assert p.errors == []


def test_playground_curl_line_reproduces_a_drawn_seed(shipped, open_page):
    """No seed given: the server draws one (usually above 2^53, beyond a JS number); the page shows
    it exactly, and the curl line, run as it stands, returns the same names."""
    p = open_page()
    p.page.goto(shipped.url + "/")
    first_load(p.page)
    fill(p.page, count=6, temperature=1.3)
    shown = generate(p.page)
    seed = p.page.text_content("#seed-used")
    argv = shlex.split(p.page.text_content("#curl"))
    assert argv[:2] == ["curl", "-s"] and len(argv) == 3
    url = httpx.URL(argv[2])
    assert url.params["seed"] == seed and url.params["count"] == "6" and url.params["temperature"] == "1.3"
    assert str(url).startswith(shipped.url + "/generate?")
    again = httpx.get(argv[2]).json()
    assert str(again["seed"]) == seed
    assert shown == as_shown(again)
    p.page.click("#copy")  # selects the line (and copies it where the clipboard is allowed)
    assert p.page.evaluate("window.getSelection().toString()") == p.page.text_content("#curl")
    p.page.click("#keep-seed")
    assert p.page.input_value("input[name=seed]") == seed
    assert p.errors == []


def test_playground_shows_the_apis_message_next_to_the_field(shipped, open_page):
    p = open_page()
    p.page.goto(shipped.url + "/")
    first_load(p.page)
    fill(p.page, prefix="Ma9", count=3)
    p.page.click("#submit")
    p.page.wait_for_selector("#error-prefix:not(:empty)")
    api = httpx.get(shipped.url + "/generate", params={**FORM_DEFAULTS, "prefix": "Ma9", "count": 3})
    assert api.status_code == 422
    [item] = api.json()["detail"]
    assert p.page.text_content("#error-prefix") == item["message"]
    assert p.page.get_attribute("input[name=prefix]", "aria-invalid") == "true"
    assert p.page.text_content("#error-count") == "" and p.page.is_hidden("#results")

    fill(p.page, prefix="ma", count=0, temperature=0)  # two fields wrong at once: each its message
    p.page.click("#submit")
    p.page.wait_for_selector("#error-count:not(:empty)")
    assert p.page.text_content("#error-prefix") == ""
    api = httpx.get(shipped.url + "/generate", params={**FORM_DEFAULTS, "prefix": "ma", "count": 0,
                                                         "temperature": 0}).json()
    messages = {i["field"]: i["message"] for i in api["detail"]}
    assert p.page.text_content("#error-count") == messages["count"]
    assert p.page.text_content("#error-temperature") == messages["temperature"]
    # the only console errors are Chromium's notes of the 422 responses themselves
    assert p.errors and all("status of 422" in e for e in p.errors)


def test_playground_says_when_no_model_is_served(serve, tmp_path, open_page):
    server = serve(tmp_path / "empty-registry")
    p = open_page()
    p.page.goto(server.url + "/")
    assert "no model loaded yet" in p.page.text_content("#served")
    p.page.click("#submit")
    p.page.wait_for_selector("#error-form:not(:empty)")
    assert "no validated model is loaded yet" in p.page.text_content("#error-form")
    assert all("status of 503" in e for e in p.errors)


def test_playground_works_at_a_phones_width(shipped, open_page, screenshots):
    p = open_page()
    p.page.set_viewport_size(PHONE)
    p.page.goto(shipped.url + "/")
    first_load(p.page)
    fill(p.page, count=8, seed=7, prefix="a")
    shown = generate(p.page)
    assert len(shown) == 8
    assert p.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for selector in ("#submit", "#curl", "#copy", "input[name=novel_only]", "input[name=exclude]",
                     "select[name=case]"):
        box = p.page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
    p.page.screenshot(path=screenshots / "playground-phone.png", full_page=True)
    p.page.set_viewport_size(DESKTOP)
    assert p.errors == []


def test_playground_shows_example_names_on_first_load_and_says_so(shipped, open_page):
    p = open_page()
    p.page.goto(shipped.url + "/")
    shown = first_load(p.page)
    seed = p.page.text_content("#example-seed")
    assert p.page.is_visible("#example") and f"fixed seed {seed}" in p.page.text_content("#example")
    api = httpx.get(shipped.url + "/generate", params={**FORM_DEFAULTS, "seed": seed}).json()
    assert shown == as_shown(api) and len(shown) == 10
    assert p.page.text_content("#seed-used") == seed
    assert p.page.input_value("input[name=seed]") == ""  # the next Generate draws its own seed
    assert p.errors == []


def test_playground_constraints_and_case_give_the_apis_names(shipped, open_page):
    p = open_page()
    p.page.goto(shipped.url + "/")
    first_load(p.page)
    fields = dict(count=15, seed=5, suffix="A", contains="r", min_length=5, exclude="Maria, Sara", case="lower")
    fill(p.page, **fields)
    shown = generate(p.page)
    api = httpx.get(shipped.url + "/generate", params={**FORM_DEFAULTS, **fields}).json()
    assert shown == as_shown(api) and not api["exhausted"]
    names = [n["name"] for n in shown]
    assert len(set(names)) == 15 and not {"maria", "sara"} & set(names)
    assert all(n.endswith("a") and "r" in n and len(n) >= 5 and n == n.lower() for n in names)
    assert p.page.is_hidden("#note")

    fill(p.page, suffix="qxq", max_length=5, count=2)  # nothing can pass: the page says why
    p.page.click("#submit")
    p.page.wait_for_selector("#note:not([hidden])")
    assert "attempts" in p.page.text_content("#note") and "suffix refused" in p.page.text_content("#note")
    assert p.errors == []


def test_playground_shows_every_fields_error_at_once_and_clears_old_names(shipped, open_page, screenshots):
    p = open_page()
    p.page.goto(shipped.url + "/")
    first_load(p.page)
    fill(p.page, count=0, prefix="a9", suffix="#", min_length=100)
    p.page.click("#submit")
    p.page.wait_for_selector("#error-suffix:not(:empty)")
    params = {**FORM_DEFAULTS, "count": 0, "prefix": "a9", "suffix": "#", "min_length": 100}
    api = httpx.get(shipped.url + "/generate", params=params).json()
    messages = {i["field"]: i["message"] for i in api["detail"]}
    assert set(messages) == {"count", "prefix", "suffix", "min_length"}
    for field, message in messages.items():
        assert p.page.text_content(f"#error-{field}") == message
        assert p.page.get_attribute(f"[name={field}]", "aria-invalid") == "true"
    assert "'9'" in messages["prefix"]
    assert p.page.is_hidden("#results") and p.page.evaluate("document.querySelectorAll('#names li').length") == 0
    p.page.screenshot(path=screenshots / "playground-errors.png", full_page=True)
    assert p.errors and all("status of 422" in e for e in p.errors)
