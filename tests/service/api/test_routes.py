"""The HTTP API in process (TestClient runs the lifespan): happy paths, every invalid input, metrics."""
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import NAME, metric

from service.api import answers
from service.core import offline
from service.api.app import create_app


def field_errors(r):
    return {(d["field"], d["message"]) for d in r.json()["detail"]}


def fields(r):
    return {d["field"] for d in r.json()["detail"]}


# ---- happy paths -----------------------------------------------------------------------------------

def test_generate_post_returns_names_with_model_and_seed(client):
    r = client.post("/generate", json={"count": 5, "seed": 1})
    assert r.status_code == 200
    body = r.json()
    assert body["model"]["name"] == NAME
    assert body["seed"] == 1
    assert body["requested"] == 5
    assert body["exhausted"] is False
    assert len(body["names"]) == 5
    for item in body["names"]:
        assert set(item) == {"name", "logprob", "logprob_per_char", "percentile", "novel", "cut"}
        assert item["logprob"] < 0


def test_generate_get_equals_post(client):
    r_get = client.get("/generate", params={"count": 7, "seed": 3, "temperature": 0.7, "top_k": 5,
                                            "prefix": "a", "max_length": 10, "novel_only": "false"})
    r_post = client.post("/generate", json={"count": 7, "seed": 3, "temperature": 0.7, "top_k": 5,
                                            "prefix": "a", "max_length": 10, "novel_only": False})
    assert r_get.status_code == 200
    assert r_post.status_code == 200
    assert r_get.json() == r_post.json()


def test_generate_defaults_to_one_name_and_draws_a_seed(client):
    r1, r2 = client.post("/generate"), client.get("/generate")
    assert r1.status_code == 200
    assert r2.status_code == 200
    assert len(r1.json()["names"]) == 1
    assert 0 <= r1.json()["seed"] < 2 ** 63
    assert r1.json()["seed"] != r2.json()["seed"]
    again = client.post("/generate", json={"seed": r1.json()["seed"]})
    assert again.json()["names"] == r1.json()["names"]


def test_generate_is_deterministic_and_first_k_of_n(client):
    n = client.post("/generate", json={"count": 50, "seed": 42}).json()["names"]
    k = client.post("/generate", json={"count": 10, "seed": 42}).json()["names"]
    assert client.post("/generate", json={"count": 50, "seed": 42}).json()["names"] == n
    assert k == n[:10]


def test_generate_prefix_and_max_length(client):
    r = client.post("/generate", json={"count": 30, "seed": 1, "prefix": "ka", "max_length": 5, "temperature": 4})
    assert r.status_code == 200
    names = r.json()["names"]
    assert all(x["name"].startswith("ka") and len(x["name"]) <= 5 for x in names)
    assert any(x["cut"] for x in names)


def test_generate_novel_only(client):
    r = client.post("/generate", json={"count": 50, "seed": 1, "novel_only": True})
    assert r.status_code == 200
    assert all(x["novel"] for x in r.json()["names"])


def test_generate_accepts_the_limits(client):
    r = client.post("/generate", json={"count": 1000, "seed": 0, "temperature": 10, "top_k": 27, "max_length": 64})
    assert r.status_code == 200
    assert len(r.json()["names"]) == 1000


def test_score_returns_per_character_log_probabilities(client):
    gen = client.post("/generate", json={"count": 3, "seed": 8}).json()["names"]
    r = client.post("/score", json={"names": [g["name"] for g in gen] + ["emma"]})
    assert r.status_code == 200
    scores = r.json()["scores"]
    assert [s["name"] for s in scores] == [g["name"] for g in gen] + ["emma"]
    for g, s in zip(gen, scores):
        assert s["logprob"] == pytest.approx(g["logprob"], abs=1e-9)
        assert [c["char"] for c in s["per_char"]] == list(g["name"]) + ["."]
        assert s["in_corpus"] == (not g["novel"])
    assert scores[-1]["in_corpus"] is True


def test_health_ready_and_model(client):
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["model"]["name"] == NAME
    m = client.get("/model")
    assert m.status_code == 200
    body = m.json()
    assert body["vocab"] == ".abcdefghijklmnopqrstuvwxyz"
    assert body["block_size"] == 3
    assert body["parameters"]["parameters"] == 47024
    for key in ("version", "created", "metrics", "health", "architecture"):
        assert key in body


def test_request_id_is_echoed_or_generated(client):
    r = client.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    generated = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3
    assert all(len(g) >= 16 for g in generated)


def test_openapi_documents_the_parameters(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    text = json.dumps(r.json())
    for word in ("temperature", "top_k", "prefix", "max_length", "novel_only", "log-probability"):
        assert word in text


# ---- invalid input: 422 naming the field ---------------------------------------------------------

@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_generate_rejects_non_finite_temperature(client, value):
    r = client.post("/generate", content=f'{{"temperature": {value}}}', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert fields(r) == {"temperature"}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "10.5"])
def test_generate_get_rejects_bad_temperature(client, value):
    r = client.get("/generate", params={"temperature": value})
    assert r.status_code == 422
    assert fields(r) == {"temperature"}


@pytest.mark.parametrize("value", [0, -0.5, 10.01])
def test_generate_rejects_temperature_out_of_range(client, value):
    r = client.post("/generate", json={"temperature": value})
    assert r.status_code == 422
    assert fields(r) == {"temperature"}


@pytest.mark.parametrize("value", [0, -3, 1001])
def test_generate_rejects_count_out_of_range(client, value):
    r = client.post("/generate", json={"count": value})
    assert r.status_code == 422
    assert fields(r) == {"count"}
    assert client.get("/generate", params={"count": value}).status_code == 422


def test_generate_rejects_count_above_configured_max(registry, settings_for):
    with TestClient(create_app(settings_for(registry, max_count=10))) as c:
        r = c.post("/generate", json={"count": 11})
        assert r.status_code == 422
        assert field_errors(r) == {("count", "must be <= 10")}
        assert c.post("/generate", json={"count": 10}).status_code == 200


def test_generate_rejects_prefix_outside_vocab(client):
    for prefix in ["jo3", "a.b", "é"]:
        r = client.post("/generate", json={"prefix": prefix})
        assert r.status_code == 422
        assert fields(r) == {"prefix"}
        assert "vocabulary" in r.json()["detail"][0]["message"]
    assert client.get("/generate", params={"prefix": "X9"}).status_code == 422


def test_generate_lists_offending_characters_in_the_order_typed(client):
    r = client.post("/generate", json={"prefix": "Q9z!9"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["message"].startswith("characters '9!' are not in the model's vocabulary")
    r = client.post("/score", json={"names": ["zé3é"]})
    assert r.json()["detail"][0]["message"].startswith("characters 'é3' are not in the model's vocabulary")


def test_generate_rejects_prefix_too_long(client):
    r = client.post("/generate", json={"prefix": "abcde", "max_length": 5})
    assert r.status_code == 422
    assert field_errors(r) == {("prefix", "must be shorter than max_length (5)")}
    assert client.post("/generate", json={"prefix": "a" * 32}).status_code == 422  # default max_length 32


@pytest.mark.parametrize("value", [0, 65, -1])
def test_generate_rejects_max_length_out_of_range(client, value):
    r = client.post("/generate", json={"max_length": value})
    assert r.status_code == 422
    assert fields(r) == {"max_length"}


@pytest.mark.parametrize("value", [0, 28])
def test_generate_rejects_top_k_out_of_range(client, value):
    r = client.post("/generate", json={"top_k": value})
    assert r.status_code == 422
    assert fields(r) == {"top_k"}


@pytest.mark.parametrize("value", [-1, 2 ** 63])
def test_generate_rejects_seed_out_of_range(client, value):
    r = client.post("/generate", json={"seed": value})
    assert r.status_code == 422
    assert fields(r) == {"seed"}


def test_generate_rejects_unknown_fields(client):
    r = client.post("/generate", json={"count": 1, "temprature": 0.5})
    assert r.status_code == 422
    assert field_errors(r) == {("temprature", "Extra inputs are not permitted")}


def test_generate_get_rejects_unknown_query_parameters(client):
    r = client.get("/generate", params={"count": 1, "n": 5})
    assert r.status_code == 422
    assert fields(r) == {"n"}


@pytest.mark.parametrize("body,field", [
    ({"count": "5"}, "count"), ({"count": 2.5}, "count"), ({"count": True}, "count"),
    ({"temperature": "hot"}, "temperature"), ({"prefix": 3}, "prefix"), ({"novel_only": "yes"}, "novel_only"),
    ({"top_k": [1]}, "top_k"), ({"seed": "1"}, "seed"),
])
def test_generate_rejects_wrong_types(client, body, field):
    r = client.post("/generate", json=body)
    assert r.status_code == 422
    assert fields(r) == {field}


def test_generate_get_rejects_wrong_types(client):
    for params, field in [({"count": "many"}, "count"), ({"novel_only": "perhaps"}, "novel_only"),
                          ({"seed": "1.5"}, "seed")]:
        r = client.get("/generate", params=params)
        assert r.status_code == 422
        assert fields(r) == {field}


def test_generate_rejects_malformed_json(client):
    r = client.post("/generate", content=b'{"count": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "body"
    r = client.post("/generate", json=[1, 2])
    assert r.status_code == 422


def test_oversized_body_gets_413(client):
    r = client.post("/generate", json={"prefix": "a" * 100_000})
    assert r.status_code == 413
    assert r.json()["detail"][0]["field"] == "body"


def test_oversized_chunked_body_gets_413(client):
    def chunks():
        for _ in range(100):
            yield b" " * 1024
    r = client.post("/score", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_score_rejects_names_outside_vocab(client):
    r = client.post("/score", json={"names": ["anna", "Bob"]})
    assert r.status_code == 422
    assert fields(r) == {"names.1"}
    assert client.post("/score", json={"names": []}).status_code == 422
    assert client.post("/score", json={"names": "anna"}).status_code == 422
    assert client.post("/score", json={"names": ["a.b"]}).status_code == 422
    assert client.post("/score", json={"names": ["a" * 65]}).status_code == 422


def test_unknown_route_is_json_404(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json()["detail"][0]["message"] == "Not Found"


def test_work_beyond_the_budget_gets_503_with_retry_after(registry, settings_for):
    """The gate counts names, not requests: max_in_flight x max_count names fit, one more does not."""
    with TestClient(create_app(settings_for(registry, max_in_flight=2, max_count=10, max_score_names=10))) as c:
        gate = c.app.state.gate
        assert gate.budget == 20
        gate.load = 19  # as if 19 names were being generated
        assert c.post("/generate", json={"count": 1}).status_code == 200
        r = c.post("/generate", json={"count": 2})
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert "busy" in r.json()["detail"][0]["message"]
        assert c.post("/score", json={"names": ["ab", "cd"]}).status_code == 503
        assert metric(c.get("/metrics").text, "namegen_busy_rejections_total") == 2
        gate.load = 0
        assert c.post("/generate", json={"count": 10}).status_code == 200
        assert gate.load == 0 and gate.requests == 0  # released after each request


# ---- readiness and metrics -----------------------------------------------------------------------

def test_readyz_is_503_before_a_model_is_loaded(tmp_path, settings_for):
    with TestClient(create_app(settings_for(tmp_path / "empty"))) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reason"] == "no_model_published"
        g = c.post("/generate", json={})
        assert g.status_code == 503
        assert g.headers["retry-after"]
        assert c.get("/model").status_code == 503
        text = c.get("/metrics").text
        assert metric(text, "namegen_ready") == 0
        assert metric(text, "namegen_reloads_total", outcome="failed") == 1


def test_metrics_count_what_was_served(registry, settings_for):
    with TestClient(create_app(settings_for(registry))) as client:
        check_metrics_count_what_was_served(client)


def test_metrics_do_not_grow_a_series_per_unknown_method(registry, settings_for):
    with TestClient(create_app(settings_for(registry))) as client:
        for method in ("X0", "X1", "X2"):
            client.request(method, "/nope")
        text = client.get("/metrics").text
    assert "X0" not in text and "X1" not in text and "X2" not in text
    assert metric(text, "namegen_requests_total", route="unmatched", method="other") == 3


def check_metrics_count_what_was_served(client):
    for count in (1, 2, 3):
        assert client.post("/generate", json={"count": count, "seed": 1}).status_code == 200
    assert client.get("/generate", params={"count": 4}).status_code == 200
    assert client.post("/generate", json={"count": 0}).status_code == 422
    assert client.post("/score", json={"names": ["ab", "cd"]}).status_code == 200
    text = client.get("/metrics").text
    assert metric(text, "namegen_requests_total", route="/generate", method="POST", status="200") == 3
    assert metric(text, "namegen_requests_total", route="/generate", method="GET", status="200") == 1
    assert metric(text, "namegen_requests_total", route="/generate", method="POST", status="422") == 1
    assert metric(text, "namegen_request_duration_seconds_count", route="/generate", method="POST",
                  status="200") == 3
    assert metric(text, "namegen_names_generated_total") == 10
    assert metric(text, "namegen_names_scored_total") == 2
    version = client.get("/readyz").json()["model"]["version"]
    assert metric(text, "namegen_model_info", name=NAME, version=version) == 1
    assert metric(text, "namegen_reloads_total", outcome="ok") == 1
    assert metric(text, "namegen_ready") == 1


# ---- parsing shared by /generate and /score --------------------------------------------------------

def test_generate_get_rejects_a_repeated_query_parameter(client):
    r = client.get("/generate?count=1000000&count=1")
    assert r.status_code == 422
    assert field_errors(r) == {("count", "given more than once")}


@pytest.mark.parametrize("text", ["", "count=1", "count=2&seed=5&&", "a", "a=", "=b", "x=1=2", "k=v;z=1",
                                  "prefix=m%C3%A9&suffix=a+b", "prefix=\xe9", "&&", "exclude=ann,bob"])
def test_query_parameters_are_what_parse_qsl_gives(text):
    from urllib.parse import parse_qsl

    from service.api.parsing import query

    class Asked:  # what query() reads of a request
        scope = {"query_string": text.encode("latin-1")}
    assert query(Asked()) == dict(parse_qsl(text, keep_blank_values=True))


@pytest.mark.parametrize("body", [b'{"names": ["\xff\xfe"]}', b"[" * 5000 + b"]" * 5000, b'{"names": '])
def test_score_rejects_bad_json_like_generate(client, body):
    for route in ("/score", "/generate"):
        r = client.post(route, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, route
        assert fields(r) == {"body"}, route


@pytest.mark.parametrize("per_char", [True, False])
def test_score_streams_the_bytes_of_one_json_document(client, monkeypatch, per_char):
    """The answer, streamed a few names a piece, is byte for byte the compact JSON of the whole
    response written at once (keys in schema order, floats as repr)."""
    monkeypatch.setattr(answers, "SCORE_PIECE", 2)
    names = ["emma", "", "zqxv", "a" * 64, "anna"]
    r = client.post("/score", json={"names": names, "per_char": per_char})
    assert r.status_code == 200
    engine = client.app.state.model.engine
    scored = offline.score(engine, names)
    per_name, pct = engine.typicality([s.logprob for s in scored], [len(s.name) + 1 for s in scored])
    scores = [{"name": s.name, "logprob": s.logprob, "logprob_per_char": pc, "percentile": round(p, 1),
               "in_corpus": s.in_corpus}
              | ({"per_char": [{"char": c, "logprob": v} for c, v in s.per_char]} if per_char else {})
              for s, pc, p in zip(scored, per_name, pct)]
    whole = {"model": {"name": engine.name, "version": engine.version}, "scores": scores}
    assert r.content == json.dumps(whole, separators=(",", ":")).encode()
    assert r.headers["content-type"] == "application/json"


def test_score_per_char_false_gives_totals_only(client):
    full = client.post("/score", json={"names": ["emma", "zqxv"]}).json()["scores"]
    short = client.post("/score", json={"names": ["emma", "zqxv"], "per_char": False}).json()["scores"]
    assert [set(s) for s in short] == [{"name", "logprob", "logprob_per_char", "percentile", "in_corpus"}] * 2
    assert [s["logprob"] for s in short] == [s["logprob"] for s in full]
    assert full[0]["logprob"] == pytest.approx(sum(c["logprob"] for c in full[0]["per_char"]), abs=1e-12)


# ---- constraints, case and the readable score --------------------------------------------------------

def test_generate_constraints_match_without_regard_to_case(client):
    body = {"count": 20, "seed": 3, "prefix": "Ma", "suffix": "A", "contains": "", "min_length": 4,
            "exclude": ["MARA", "Maya"], "unique": True, "case": "title"}
    r = client.post("/generate", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    names = [n["name"] for n in got["names"]]
    assert len(names) == 20 and not got["exhausted"] and got["note"] is None
    assert all(n.startswith("Ma") and n.endswith("a") and len(n) >= 4 for n in names)
    assert len(set(names)) == 20 and not {"Mara", "Maya"} & set(names)
    lower = client.post("/generate", json={**body, "prefix": "ma", "suffix": "a", "exclude": ["mara", "maya"],
                                           "case": "lower"}).json()
    assert [n["name"] for n in lower["names"]] == [n.lower() for n in names]
    assert got["attempts"] == lower["attempts"] >= 20
    assert sum(got["refused"].values()) >= got["attempts"] - 20


def test_generate_get_takes_exclude_comma_separated(client):
    first = client.get("/generate", params={"count": 3, "seed": 9, "unique": "true"}).json()["names"]
    taken = [n["name"] for n in first]
    r = client.get("/generate", params={"count": 3, "seed": 9, "unique": "true", "exclude": ",".join(taken)})
    assert r.status_code == 200
    assert not set(taken) & {n["name"] for n in r.json()["names"]}
    assert r.json()["refused"]["exclude"] >= 3


def test_generate_exhausted_answer_says_why(client):
    r = client.post("/generate", json={"count": 2, "seed": 1, "suffix": "qxq", "max_length": 5})
    got = r.json()
    assert got["exhausted"] and got["names"] == []
    assert got["attempts"] == 2000 == got["refused"]["suffix"]
    assert got["note"] == ("found 0 of 2 names: 2000 attempts in a row were refused (2000 attempts in all); "
                           "suffix refused 2000 of them")


def test_generate_reports_every_bad_field_at_once(client):
    r = client.post("/generate", json={"count": 10 ** 6, "prefix": "a9", "suffix": "#", "contains": "abcdefg",
                                       "max_length": 5, "min_length": 6})
    assert r.status_code == 422
    assert fields(r) == {"count", "prefix", "suffix", "contains", "min_length"}
    r = client.post("/generate", json={"exclude": ["x"] * 501, "case": "upper", "unique": "yes"})
    assert fields(r) == {"exclude", "case", "unique"}


def test_served_percentile_agrees_with_a_direct_count_over_the_corpus(client):
    """Within one point of the share of corpus names with a lower per-character log-probability."""
    engine = client.app.state.model.engine
    assert engine.quantiles is not None  # written at publish
    corpus = sorted(engine.corpus)
    per_char = np.array([s.logprob / (len(s.name) + 1) for s in offline.score(engine, corpus)])
    got = client.post("/generate", json={"count": 300, "seed": 11}).json()["names"]
    ended = [n for n in got if not n["cut"]]
    assert len(ended) > 200
    for n in ended:
        assert n["logprob_per_char"] == pytest.approx(n["logprob"] / (len(n["name"]) + 1), rel=1e-12)
        direct = 100 * np.mean(per_char < n["logprob_per_char"])
        assert abs(n["percentile"] - direct) <= 1.0, (n, direct)
    scored = client.post("/score", json={"names": corpus[:50], "per_char": False}).json()["scores"]
    for s, expected in zip(scored, per_char[:50]):
        assert abs(s["percentile"] - 100 * np.mean(per_char < expected)) <= 1.0


def test_generate_reports_schema_and_model_errors_together(client):
    """A count the schema refuses does not hide a prefix the model cannot write."""
    for r in (client.get("/generate", params={"count": 0, "prefix": "a9", "temperature": "hot"}),
              client.post("/generate", json={"count": 0, "prefix": "a9", "suffix": 3})):
        assert r.status_code == 422
        assert fields(r) >= {"count", "prefix"}
        assert any("'9'" in d["message"] for d in r.json()["detail"] if d["field"] == "prefix")
    r = client.post("/generate", json={"max_length": 0, "prefix": "abc"})
    assert fields(r) == {"max_length"}  # the prefix is not measured against a max_length that was refused
