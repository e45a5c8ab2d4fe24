"""The playground against a server that asks for tokens: the token field appears on the 401, the
token typed there is sent and kept for the tab (sessionStorage), and the page never shows it."""
from __future__ import annotations

import shutil

from service_helpers import NAME, ROOT, Server

from service import tokens


def test_the_playground_asks_for_a_token_when_the_server_does_and_then_generates(open_page, tmp_path):
    registry = shutil.copytree(ROOT / "models", tmp_path / "models")
    token = tokens.new_token()
    tokens.save(tmp_path / "tokens.json", [tokens.Token("browser", tokens.digest(token), frozenset({"generate"}))])
    env = {"NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_MODEL_NAME": NAME, "NAMEGEN_RELOAD_INTERVAL": "0",
           "NAMEGEN_LOG_FORMAT": "json", "NAMEGEN_TOKENS_FILE": str(tmp_path / "tokens.json")}
    server = Server(env, tmp_path / "server.log")
    try:
        p = open_page()
        p.page.goto(server.url + "/")  # the first-load example names need a token: the field appears
        p.page.wait_for_selector("#token-field:not([hidden])")
        assert "token" in p.page.text_content("#error-form")
        assert p.page.is_hidden("#results")
        p.page.fill("input[name=count]", "3")
        p.page.fill("input[name=token]", token)
        p.page.click("#submit")
        p.page.wait_for_selector("#results:not([hidden]) #names li")
        assert len(p.page.query_selector_all("#names li")) == 3
        assert p.page.evaluate("() => sessionStorage.getItem('namegen-token')") == token
        assert token not in p.page.text_content("#curl") and "Authorization: Bearer" in p.page.text_content("#curl")
        p.page.reload()  # the same tab: the kept token is sent without typing, from the first load on
        p.page.wait_for_selector("#results:not([hidden]) #names li")
        assert not p.page.is_hidden("#token-field")
        p.page.fill("input[name=count]", "2")
        p.page.click("#submit")
        for _ in range(100):  # (the page's CSP forbids wait_for_function's eval)
            if len(p.page.query_selector_all("#names li")) == 2:
                break
            p.page.wait_for_timeout(50)
        assert len(p.page.query_selector_all("#names li")) == 2
        statuses = [x["status"] for x in server.logs() if x.get("msg") == "request" and x["path"] == "/generate"]
        assert statuses == [401, 200, 200, 200]
        assert [e for e in p.errors if "401" not in e] == []  # the browser reports the 401 itself, nothing else
    finally:
        server.stop()
