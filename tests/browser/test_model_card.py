"""The model card at /model/card in Chromium: the shipped model's report, and a reload to a new version."""
from __future__ import annotations

import json
import shutil
import signal

import httpx

from artifact.manifest import MANIFEST_FILE, Manifest, hash_files
from artifact.registry import current_version, set_current, version_path
from browser_helpers import DESKTOP, PHONE
from service_helpers import NAME, ROOT, wait_until
from web_helpers import expected_metrics

IMAGES_JS = """() => [...document.images].map(i => ({src: new URL(i.src).pathname, complete: i.complete,
  width: i.naturalWidth, alt: i.alt}))"""
METRICS_JS = """() => Object.fromEntries([...document.querySelectorAll('[data-metric]')].map(
  e => [e.dataset.metric, [e.dataset.value, e.textContent]]))"""


def report_plots(version_dir) -> set[str]:
    """The plots the card must show: those the manifest lists, or (an older manifest) report/plots/**."""
    listed = {p for p in json.loads((version_dir / MANIFEST_FILE).read_text())["files"]
              if p.startswith("report/") and p.endswith(".png")}
    return listed or {p.relative_to(version_dir).as_posix() for p in (version_dir / "report").rglob("*.png")}


def open_card(open_page, url: str, size=DESKTOP):
    p = open_page()
    p.page.set_viewport_size(size)
    p.page.goto(url + "/model/card", wait_until="load")  # load: every image has loaded or failed
    return p


def check_card(p, version_dir) -> None:
    """Every report plot is shown and decoded; the metrics are the manifest's."""
    manifest = json.loads((version_dir / MANIFEST_FILE).read_text())
    images = p.page.evaluate(IMAGES_JS)
    prefix = f"/model/files/{manifest['version']}/"
    assert {i["src"].removeprefix(prefix) for i in images} == report_plots(version_dir)
    assert all(i["complete"] and i["width"] > 0 and i["alt"] for i in images), images
    shown = p.page.evaluate(METRICS_JS)
    expected = expected_metrics(manifest)
    assert {k: float(v) for k, (v, _) in shown.items()} == expected
    for key, (_, text) in shown.items():
        places = 4 if "max_abs_diff" not in key else None
        assert text == (f"{expected[key]:.4f}" if places else f"{expected[key]:.3g}"), key
    assert manifest["version"] in p.page.text_content("h1")
    assert p.page.locator("#warnings li").count() == len(manifest["health"]["warnings"])


def test_card_shows_the_shipped_models_report(shipped, open_page, screenshots):
    p = open_card(open_page, shipped.url)
    shipped_dir = version_path(ROOT / "models", NAME, current_version(ROOT / "models", NAME))
    check_card(p, shipped_dir)
    assert len(report_plots(shipped_dir)) >= 5  # loss, activations, their gradients, update ratios
    p.page.screenshot(path=screenshots / "card-desktop.png", full_page=True)
    assert p.errors == []


def test_card_works_at_a_phones_width(shipped, open_page, screenshots):
    p = open_card(open_page, shipped.url, PHONE)
    assert p.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    widths = p.page.evaluate("[...document.images].map(i => i.getBoundingClientRect().right)")
    assert widths and max(widths) <= PHONE["width"]
    p.page.screenshot(path=screenshots / "card-phone.png", full_page=True)
    assert p.errors == []


def test_the_playground_links_to_the_card(shipped, open_page):
    p = open_page()
    p.page.goto(shipped.url + "/")
    p.page.click("#served a")
    p.page.wait_for_url("**/model/card")
    assert p.page.locator("#metrics-table").is_visible()
    assert p.errors == []


def publish_copy(registry, suffix: str) -> str:
    """A new version: the current one's files under a new name, its manifest restamped and hashing
    every file (the current format, whatever the copied version had)."""
    old = current_version(registry, NAME)
    new = f"{old}-{suffix}"
    target = shutil.copytree(version_path(registry, NAME, old), version_path(registry, NAME, new))
    m = Manifest.read(target / MANIFEST_FILE)
    m.version, m.created, m.files = new, "2026-11-26T00:00:00Z", hash_files(target)
    m.metrics = {**m.metrics, "val": m.metrics["val"] - 0.001}  # a different number for the card to show
    m.write(target / MANIFEST_FILE)
    set_current(registry, NAME, new)
    return new


def test_card_shows_a_new_version_after_a_reload(serve, tmp_path, open_page):
    registry = shutil.copytree(ROOT / "models", tmp_path / "models")
    server = serve(registry)
    old = current_version(registry, NAME)
    p = open_card(open_page, server.url)
    assert old in p.page.text_content("h1")

    new = publish_copy(registry, "web")
    server.signal(signal.SIGHUP)
    wait_until(lambda: httpx.get(server.url + "/readyz").json().get("model", {}).get("version") == new)
    p.page.reload(wait_until="load")
    check_card(p, version_path(registry, NAME, new))
    assert "2026-11-26T00:00:00Z" in p.page.text_content("#summary")
    assert httpx.get(f"{server.url}/model/files/{old}/{sorted(report_plots(version_path(registry, NAME, old)))[0]}"
                     ).status_code == 404  # only the served version's files
    assert p.errors == []
