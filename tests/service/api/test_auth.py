"""Tokens with scopes in the app: 401 without or with a wrong token, 403 without the scope, open
probes and pages, reloads of the token file, the token's name (never the token) in the access log,
and the start-up refusal when exposed without tokens."""
import logging
import os
import time

import pytest
from fastapi.testclient import TestClient

from service import tokens
from service.api import auth
from service.api.app import create_app


def write_tokens(path, **scopes):
    """One token per name with the given scopes (a comma-separated string); returns {name: token}."""
    made = {name: tokens.new_token() for name in scopes}
    tokens.save(path, [tokens.Token(n, tokens.digest(t), frozenset(filter(None, scopes[n].split(","))))
                       for n, t in made.items()])
    return made


@pytest.fixture
def secured(registry, settings_for, tmp_path):
    path = tmp_path / "tokens.json"
    made = write_tokens(path, gen="generate", reader="read", scorer="score,infer")
    app = create_app(settings_for(registry, tokens_file=path))
    with TestClient(app) as c:
        yield c, made, path, app


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path, scope", [
    ("/generate", "generate"), ("/score", "score"), ("/model", "read"), ("/model/card", "read"),
    ("/model/files/v1/report.html", "read"), ("/models", "read"), ("/models/names", "read"), ("/metrics", "read"),
    ("/v2/models/names/infer", "infer"), ("/v2/models/names/versions/3/infer", "infer"),
    ("/v2/models/names/generate", "generate"), ("/v2/models/names", "read"), ("/v2", "read"),
    ("/v2/models/names/ready", "read"), ("/v2/health/ready", auth.OPEN), ("/v2/health/live", auth.OPEN),
    ("/healthz", auth.OPEN), ("/readyz", auth.OPEN), ("/", auth.OPEN), ("/docs", auth.OPEN),
    ("/openapi.json", auth.OPEN), ("/static/playground.js", auth.OPEN),
    ("/generatex", auth.OPEN), ("/modelx", auth.OPEN), ("/v2/models/a/b/infer", "read"),
])
def test_each_path_needs_the_scope_of_its_prefix(path, scope):
    assert auth.scope_for(path) == scope


def test_no_token_gets_401_with_a_bearer_challenge(secured):
    c, *_ = secured
    r = c.get("/generate?count=1")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="namegen"'
    assert r.json()["detail"][0]["field"] == "authorization"
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("header", ["Bearer ng_wrong", "Bearer " + "x" * 300, "bearer  ng_nope "])
def test_a_wrong_token_gets_401_invalid_token(secured, header):
    c, *_ = secured
    r = c.get("/generate?count=1", headers={"Authorization": header})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_a_token_in_another_scheme_counts_as_none(secured):
    c, made, *_ = secured
    r = c.get("/generate?count=1", headers={"Authorization": f"Basic {made['gen']}"})
    assert r.status_code == 401 and "error=" not in r.headers["www-authenticate"]


def test_a_token_without_the_scope_gets_403_naming_it(secured):
    c, made, *_ = secured
    r = c.get("/generate?count=1", headers=bearer(made["reader"]))
    assert r.status_code == 403
    assert r.headers["www-authenticate"] == 'Bearer realm="namegen", error="insufficient_scope", scope="generate"'
    assert c.post("/score", json={"names": ["emma"]}, headers=bearer(made["gen"])).status_code == 403
    assert c.get("/metrics", headers=bearer(made["gen"])).status_code == 403


def test_a_token_with_the_scope_is_served(secured):
    c, made, *_ = secured
    assert c.get("/generate?count=2&seed=1", headers=bearer(made["gen"])).json()["seed"] == 1
    assert c.post("/score", json={"names": ["emma"]}, headers=bearer(made["scorer"])).status_code == 200
    for path in ("/model", "/metrics", "/model/card"):
        assert c.get(path, headers=bearer(made["reader"])).status_code == 200, path


def test_probes_pages_and_the_api_document_stay_open(secured):
    c, *_ = secured
    for path in ("/healthz", "/readyz", "/", "/openapi.json", "/static/playground.js"):
        assert c.get(path).status_code == 200, path


def test_a_changed_token_file_is_read_again_and_revoked_tokens_stop_working(secured):
    c, made, path, app = secured
    store = app.state.access.store
    assert c.get("/generate?count=1", headers=bearer(made["gen"])).status_code == 200  # found, and kept
    fresh = write_tokens(path, newcomer="generate")  # replaces every token (atomically, a new inode)
    store.next_check = 0  # the next request looks at the file's stat (else within a second)
    assert c.get("/generate?count=1", headers=bearer(fresh["newcomer"])).status_code == 200
    assert c.get("/generate?count=1", headers=bearer(made["gen"])).status_code == 401


def test_an_unchanged_file_is_not_read_again_until_reload(secured):
    c, made, path, app = secured
    store = app.state.access.store
    before = store.by_digest
    store.next_check = 0
    c.get("/generate?count=1", headers=bearer(made["gen"]))
    assert store.by_digest is before
    store.reload()  # what SIGHUP does
    assert store.by_digest is not before and store.by_digest == before


def test_a_broken_token_file_keeps_the_previous_tokens(secured, caplog):
    c, made, path, app = secured
    path.write_text('{"tokens": [{"name": "x"')
    app.state.access.store.next_check = 0
    with caplog.at_level(logging.ERROR, logger="namegen.auth"):
        assert c.get("/generate?count=1", headers=bearer(made["gen"])).status_code == 200
    assert "not reloaded" in caplog.text


def test_the_access_log_names_the_token_and_never_holds_it(secured, caplog):
    c, made, *_ = secured
    with caplog.at_level(logging.INFO, logger="namegen.access"):
        c.get("/generate?count=1", headers=bearer(made["gen"]))
        c.get("/generate?count=1", headers=bearer("ng_guess"))
    fields = [r.fields for r in caplog.records if r.name == "namegen.access"]
    assert fields[0]["token"] == "gen" and fields[0]["status"] == 200
    assert "token" not in fields[1] and fields[1]["status"] == 401
    assert made["gen"] not in caplog.text and "ng_guess" not in caplog.text


def test_without_a_token_file_on_loopback_nothing_is_asked(client):
    assert client.get("/generate?count=1").status_code == 200


@pytest.mark.parametrize("host, env, words", [
    ("0.0.0.0", {}, "NAMEGEN_TOKENS_FILE"),
    ("10.1.2.3", {}, "NAMEGEN_AUTH=off"),
    ("127.0.0.1", {"auth": "on"}, "NAMEGEN_AUTH=on needs NAMEGEN_TOKENS_FILE"),
    ("0.0.0.0", {"tokens_file": "/nonexistent/tokens.json"}, "cannot read"),
])
def test_the_service_refuses_to_start_exposed_without_tokens(settings_for, registry, host, env, words):
    problem = auth.startup_problem(settings_for(registry, host=host, **env))
    assert words in problem and "\n" not in problem


@pytest.mark.parametrize("host, env", [("127.0.0.1", {}), ("::1", {}), ("localhost", {}),
                                       ("0.0.0.0", {"auth": "off"})])
def test_loopback_or_auth_off_starts_without_tokens(settings_for, registry, host, env):
    assert auth.startup_problem(settings_for(registry, host=host, **env)) is None


def test_a_real_server_on_all_addresses_without_tokens_exits_2_with_one_line(registry, tmp_path):
    import subprocess
    import sys
    from service_helpers import ROOT
    env = {**os.environ, "NAMEGEN_HOST": "0.0.0.0", "NAMEGEN_PORT": "0", "NAMEGEN_MODEL_DIR": str(registry)}
    env.pop("NAMEGEN_TOKENS_FILE", None)
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and time.monotonic() - start < 30
    [line] = r.stderr.strip().splitlines()
    assert "NAMEGEN_TOKENS_FILE" in line and "NAMEGEN_AUTH=off" in line


def test_only_tokens_that_were_found_are_kept_by_their_text(secured):
    c, made, path, app = secured
    store = app.state.access.store
    for guess in ("ng_guess-one", "ng_guess-two"):
        assert c.get("/generate?count=1", headers=bearer(guess)).status_code == 401
    assert c.get("/generate?count=1", headers=bearer(made["gen"])).status_code == 200
    assert list(store.known) == [made["gen"]]
    assert store.find(made["gen"]) is store.known[made["gen"]]
