"""The HTTP edge (service/api/edge.py): hot routes answer exactly as FastAPI would, HEAD on every GET
route, the refusals before any route, the headers every answer carries, metrics by route template."""
import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from service_helpers import metric

from service.api.app import create_app
from service.api.edge import HotRoutes

VOLATILE = {"x-request-id", "date"}


@pytest.fixture(scope="module")
def both(trained_registry):
    """The same settings twice: as served (hot routes on) and with every route going through FastAPI."""
    from service.settings import Settings
    settings = Settings(model_dir=trained_registry, model_name="names", reload_interval=0, workers=1)
    hot, slow = create_app(settings), create_app(settings)
    original = HotRoutes.build

    def cold_build(self):
        return {} if self.app is slow else original(self)
    HotRoutes.build = cold_build
    try:
        with TestClient(hot) as a, TestClient(slow) as b:
            yield a, b
    finally:
        HotRoutes.build = original


REQUESTS = [("GET", "/healthz", {}), ("GET", "/readyz", {}), ("GET", "/model", {}),
            ("GET", "/generate?count=3&seed=7", {}), ("GET", "/generate?count=0", {}),
            ("GET", "/generate?count=2&count=3", {}), ("GET", "/generate?top_k=999&seed=1", {}),
            ("POST", "/generate", {"json": {"count": 2, "seed": 5, "prefix": "an"}}),
            ("POST", "/generate", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
            ("POST", "/score", {"json": {"names": ["emma", "x"], "per_char": True}}),
            ("POST", "/score", {"json": {"names": ["3"]}}), ("GET", "/", {}), ("GET", "/model/card", {}),
            ("HEAD", "/healthz", {}), ("HEAD", "/generate?seed=2", {}), ("DELETE", "/generate", {}),
            ("GET", "/nowhere", {}), ("GET", "/openapi.json", {}),
            ("POST", "/v2/models/names/infer", {"json": {"id": "a", "inputs": [{
                "name": "context", "datatype": "INT64", "shape": [2, 3], "data": [0, 0, 0, 0, 1, 2]}]}}),
            ("POST", "/v2/models/names/infer", {"content": b"[1]"}), ("GET", "/v2/models/names/infer", {}),
            ("POST", "/v2/models/nobody/infer", {"json": {}}), ("GET", "/v2/models/names", {}),
            ("GET", "/v2/models/names/ready", {}), ("HEAD", "/v2/models/names/ready", {}),
            ("GET", "/v2/models/names/versions/19990101T000000Z-000000", {}),
            ("POST", "/v2/models/names/generate", {"json": {"text_input": "an", "parameters": {"seed": 3}}})]


@pytest.mark.parametrize("method,path,options", REQUESTS, ids=[f"{m} {p}" for m, p, _ in REQUESTS])
def test_hot_routes_answer_exactly_as_fastapi_does(both, method, path, options):
    hot, slow = both
    a, b = hot.request(method, path, **options), slow.request(method, path, **options)
    assert a.status_code == b.status_code
    assert a.content == b.content
    assert {k: v for k, v in a.headers.items() if k not in VOLATILE} == \
        {k: v for k, v in b.headers.items() if k not in VOLATILE}


def test_the_hot_table_holds_only_routes_that_take_nothing_but_the_request(both):
    hot, _ = both
    hot.get("/healthz")
    edge = hot.app.middleware_stack
    while not isinstance(edge, HotRoutes):
        edge = edge.app
    paths = {path for _, path in edge.table}
    assert {"/healthz", "/generate", "/score", "/readyz"} <= paths
    assert not any("{" in p for p in paths)  # /static/{name} and the like go through FastAPI
    assert "/v2/models/{name}/infer" in {route.path for route in edge.plain}  # placed first: matched here


def test_head_is_answered_on_every_get_route_without_a_body(client):
    for route in client.app.routes:
        if "GET" in getattr(route, "methods", ()) and "{" not in route.path:
            get, head = client.get(route.path), client.head(route.path)
            assert head.status_code == get.status_code, route.path
            assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"], route.path


def test_a_request_without_host_gets_a_json_400(client):
    """At the ASGI level (a test client always sends a Host); the real server is tested in test_protocol.py."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "GET", "path": "/healthz", "raw_path": b"/healthz", "query_string": b"",
             "headers": [], "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "root_path": ""}
    asyncio.run(client.app(scope, receive, send))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 400 and headers[b"x-content-type-options"] == b"nosniff"
    assert json.loads(sent[1]["body"])["detail"][0]["field"] == "host"


def test_every_503_carries_retry_after(trained_registry, tmp_path):
    from service.settings import Settings
    empty = tmp_path / "empty"
    empty.mkdir()
    app = create_app(Settings(model_dir=empty, model_name="names", reload_interval=0, workers=1))
    with TestClient(app) as c:
        for path in ("/model/card", "/model", "/readyz", "/generate"):
            r = c.get(path)
            assert r.status_code == 503 and r.headers["retry-after"], path


def test_refusals_before_any_route_are_counted_under_the_route_template(trained_registry):
    from service.settings import Settings
    app = create_app(Settings(model_dir=trained_registry, model_name="names", reload_interval=0, workers=1))
    with TestClient(app) as c:
        assert c.post("/generate", content=b"count=1", headers={"content-type": "text/plain"}).status_code == 415
        assert c.delete("/score").status_code == 405
        assert c.get("/no/such/path").status_code == 404
        text = c.get("/metrics").text
    assert metric(text, "namegen_requests_total", route="/generate", method="POST", status="415") == 1
    assert metric(text, "namegen_requests_total", route="/score", method="DELETE", status="405") == 1
    assert metric(text, "namegen_requests_total", route="unmatched", method="GET", status="404") == 1


def test_a_body_too_large_while_read_names_the_body(client):
    chunks = (b"x" * 1024 for _ in range(200))  # chunked: no Content-Length to refuse it by
    r = client.post("/generate", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"][0]["field"] == "body"
