"""The playground at / in Chromium, against a real server serving the shipped model."""
from __future__ import annotations

import shlex

import httpx

from browser_helpers import DESKTOP, PHONE

NAMES_JS = """() => [...document.querySelectorAll('#names li')].map(li => ({
  name: li.querySelector('.name').textContent, logprob: li.querySelector('.logprob').textContent,
  bar: li.querySelector('meter').value,
  badges: [...li.querySelectorAll('.badge')].map(b => b.textContent)}))"""


def fill(page, **fields) -> None:
    for name, value in fields.items():
        if name == "novel_only":
            page.set_checked("input[name=novel_only]", value)
        else:
            page.fill(f"input[name={name}]", str(value))


def generate(page) -> list[dict]:
    page.click("#submit")
    page.wait_for_selector("#results:not([hidden]) #names li")
    return page.evaluate(NAMES_JS)


def as_shown(answer: dict) -> list[dict]:
    """What the page should show for an API answer."""
    return [{"name": n["name"] or "(empty)", "logprob": f"{n['logprob']:.2f}",
             "badges": ["novel" if n["novel"] else "in corpus"] + (["cut"] if n["cut"] else [])}
            for n in answer["names"]]


def test_playground_names_equal_the_apis_for_the_same_seed(shipped, open_page, screenshots):
    p = open_page()
    p.page.goto(shipped.url + "/")
    fields = dict(count=12, seed=20261125, temperature=0.8, top_k=20, prefix="ka", max_length=9, novel_only=True)
    fill(p.page, **fields)
    shown = generate(p.page)
    api = httpx.get(shipped.url + "/generate", params={**fields, "novel_only": "true"}).json()
    assert [{k: v for k, v in n.items() if k != "bar"} for n in shown] == as_shown(api)
    assert len(shown) == 12 and all(n["name"].startswith("ka") for n in shown)
    assert p.page.text_content("#seed-used") == "20261125"
    assert api["model"]["version"] in p.page.text_content("#result-model")
    bars = [n["bar"] for n in shown]  # the most likely name's bar is full
    assert bars[max(range(12), key=lambda i: api["names"][i]["logprob"])] == max(bars)
    p.page.screenshot(path=screenshots / "playground-desktop.png", full_page=True)
    assert p.errors == []


def test_playground_curl_line_reproduces_a_drawn_seed(shipped, open_page):
    """No seed given: the server draws one (usually above 2^53, beyond a JS number); the page shows
    it exactly, and the curl line, run as it stands, returns the same names."""
    p = open_page()
    p.page.goto(shipped.url + "/")
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
    assert [{k: v for k, v in n.items() if k != "bar"} for n in shown] == as_shown(again)
    p.page.click("#copy")  # selects the line (and copies it where the clipboard is allowed)
    assert p.page.evaluate("window.getSelection().toString()") == p.page.text_content("#curl")
    p.page.click("#keep-seed")
    assert p.page.input_value("input[name=seed]") == seed
    assert p.errors == []


def test_playground_shows_the_apis_message_next_to_the_field(shipped, open_page):
    p = open_page()
    p.page.goto(shipped.url + "/")
    fill(p.page, prefix="Ma9", count=3)
    p.page.click("#submit")
    p.page.wait_for_selector("#error-prefix:not(:empty)")
    api = httpx.get(shipped.url + "/generate", params={"prefix": "Ma9", "count": 3})
    assert api.status_code == 422
    [item] = api.json()["detail"]
    assert p.page.text_content("#error-prefix") == item["message"]
    assert p.page.get_attribute("input[name=prefix]", "aria-invalid") == "true"
    assert p.page.text_content("#error-count") == "" and p.page.is_hidden("#results")

    fill(p.page, prefix="ma", count=0, temperature=0)  # two fields wrong at once: each its message
    p.page.click("#submit")
    p.page.wait_for_selector("#error-count:not(:empty)")
    assert p.page.text_content("#error-prefix") == ""
    api = httpx.get(shipped.url + "/generate", params={"prefix": "ma", "count": 0, "temperature": 0}).json()
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
    fill(p.page, count=8, seed=7, prefix="a")
    shown = generate(p.page)
    assert len(shown) == 8
    assert p.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for selector in ("#submit", "#curl", "#copy", "input[name=novel_only]"):
        box = p.page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
    p.page.screenshot(path=screenshots / "playground-phone.png", full_page=True)
    p.page.set_viewport_size(DESKTOP)
    assert p.errors == []
