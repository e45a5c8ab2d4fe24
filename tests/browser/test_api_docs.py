"""/docs and /redoc render in Chromium from the package's own files, under the page CSP: no request
leaves the server, and the only console errors are the CSP's refusals of ReDoc's remote logo."""
from __future__ import annotations


def test_swagger_ui_renders_every_route_with_no_error(shipped, open_page):
    p = open_page()
    outside = []
    p.page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(shipped.url) else None)
    p.page.goto(shipped.url + "/docs")
    p.page.wait_for_selector(".opblock-summary-path")
    paths = {e.text_content().strip() for e in p.page.query_selector_all(".opblock-summary-path")}
    assert {"/generate", "/score", "/models", "/healthz"} <= paths
    assert p.errors == [] and outside == []


def test_redoc_renders_the_api_with_only_its_remote_logo_refused(shipped, open_page):
    p = open_page()
    p.page.goto(shipped.url + "/redoc")
    p.page.wait_for_selector("text=Generate names (the same fields as query parameters)")
    assert "Something went wrong" not in p.page.inner_text("body")
    assert [e for e in p.errors if "cdn.redoc.ly" not in e] == []
