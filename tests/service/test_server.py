"""A real `python -m service` (uvicorn) on an ephemeral 127.0.0.1 port, stopped by PID."""
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from service_helpers import NAME, ROOT, make_version, metric, wait_until


def served_version(url):
    r = httpx.get(f"{url}/readyz", timeout=10)
    return r.json()["model"]["version"] if r.status_code == 200 else None


def test_app_process_never_imports_torch(trained_registry):
    script = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        from service.api.app import create_app
        from service.settings import Settings
        with TestClient(create_app(Settings(model_dir={str(trained_registry)!r}, reload_interval=0))) as c:
            assert c.post("/generate", json={{"count": 20}}).status_code == 200
            assert c.post("/score", json={{"names": ["ann"]}}).status_code == 200
            assert c.get("/model").status_code == 200
        print("torch" in sys.modules, any(m.startswith("training") for m in sys.modules))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_server_serves_the_readme_curl_without_torch(trained_registry, start_server):
    server = start_server(trained_registry)
    r = httpx.get(f"{server.url}/generate?count=5&seed=1", timeout=10)
    assert r.status_code == 200
    assert len(r.json()["names"]) == 5
    maps = open(f"/proc/{server.proc.pid}/maps").read()
    assert "libtorch" not in maps
    assert "onnxruntime" in maps


def test_server_logs_one_json_line_per_request_with_request_id(trained_registry, start_server):
    server = start_server(trained_registry)
    assert httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "abc-1"}).status_code == 200
    assert httpx.post(f"{server.url}/generate", json={"count": 0}).status_code == 422

    def request_lines():
        lines = [x for x in server.logs() if x.get("msg") == "request"]
        return lines if len(lines) >= 2 else None
    lines = wait_until(request_lines)
    assert lines[0]["request_id"] == "abc-1"
    assert (lines[0]["method"], lines[0]["path"], lines[0]["status"]) == ("GET", "/healthz", 200)
    assert (lines[1]["method"], lines[1]["path"], lines[1]["status"]) == ("POST", "/generate", 422)
    assert lines[1]["duration_ms"] >= 0
    assert len(lines[1]["request_id"]) >= 16


def test_server_becomes_ready_when_a_model_is_published(trained_registry, tmp_path, start_server):
    registry = tmp_path / "models"
    server = start_server(registry, RELOAD_INTERVAL="0.2")
    r = httpx.get(f"{server.url}/readyz")
    assert r.status_code == 503
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/generate").status_code == 503
    shutil.copytree(trained_registry / NAME, registry / NAME)
    version = wait_until(lambda: served_version(server.url))
    assert version == (registry / NAME / "CURRENT").read_text().strip()
    assert httpx.get(f"{server.url}/generate").status_code == 200


class Load:
    """Client threads sending /generate requests until stopped; records every status and version."""

    def __init__(self, url, threads=4):
        self.url = url
        self.results: list[tuple[int, str | None]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def loop(self, i):
        with httpx.Client(timeout=30) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    r = c.post(f"{self.url}/generate", json={"count": 20, "seed": i * 100000 + n})
                    self.results.append((r.status_code, r.json()["model"]["version"] if r.status_code == 200 else None))
                except httpx.HTTPError as e:
                    self.results.append((0, repr(e)))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.results

    def versions_since(self, start):
        return {v for _, v in self.results[start:]}


def test_hot_reload_under_load(registry, start_server):
    server = start_server(registry, RELOAD_INTERVAL="0.2")
    first = served_version(server.url)
    load = Load(server.url)
    try:
        wait_until(lambda: len(load.results) > 20)
        good = make_version(registry)
        wait_until(lambda: served_version(server.url) == good)
        mark = len(load.results)
        wait_until(lambda: len(load.results) > mark + 20)
        assert load.versions_since(mark + 8) == {good}  # requests moved to the new version

        bad = make_version(registry, damage="corrupt")
        wait_until(lambda: metric(httpx.get(f"{server.url}/metrics").text, "namegen_reloads_total",
                                  outcome="failed") == 1)
        mark = len(load.results)
        ready = httpx.get(f"{server.url}/readyz").json()  # the old one serves; the refusal shows by code
        assert ready["model"]["version"] == good
        assert ready["reload"] == {"refused": bad, "reason": "checksum_mismatch"}
        time.sleep(1.0)  # several more polls: the refused version is retried with backoff only (1 s, 2 s ...)
        wait_until(lambda: len(load.results) > mark + 20)
    finally:
        results = load.finish()
    assert [r for r in results if r[0] != 200] == []  # zero failed requests
    assert {v for _, v in results} == {first, good}
    assert served_version(server.url) == good
    text = httpx.get(f"{server.url}/metrics").text
    assert 1 <= metric(text, "namegen_reloads_total", outcome="failed") <= 3
    assert metric(text, "namegen_reloads_total", outcome="ok") == 2
    assert metric(text, "namegen_model_info", name=NAME, version=good) == 1
    assert any(bad in x.get("msg", "") and x["level"] == "error" for x in server.logs())


def test_sighup_triggers_a_reload(registry, start_server):
    server = start_server(registry)  # polling off
    version = make_version(registry)
    time.sleep(0.3)
    assert served_version(server.url) != version
    server.signal(signal.SIGHUP)
    wait_until(lambda: served_version(server.url) == version)
    assert server.proc.poll() is None  # SIGHUP did not stop the server


def test_sigterm_lets_the_request_in_flight_finish(trained_registry, start_server):
    # No cache and long names: count=20000 takes a noticeable time (about a second), so SIGTERM lands mid-request.
    server = start_server(trained_registry, CACHE_ROWS="0", MAX_COUNT="20000")
    result = {}

    def slow():
        r = httpx.post(f"{server.url}/generate", json={"count": 20000, "max_length": 64, "temperature": 10,
                                                      "seed": 1}, timeout=60)
        result["status"], result["count"] = r.status_code, len(r.json()["names"])

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: metric(httpx.get(f"{server.url}/metrics").text, "namegen_in_flight") >= 1, interval=0.005)
    server.signal(signal.SIGTERM)
    t.join(60)
    assert result == {"status": 200, "count": 20000}
    # uvicorn shuts down gracefully, then re-raises the signal: the exit status says "SIGTERM"
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    assert any(x.get("msg") == "Application shutdown complete." for x in server.logs())


def test_several_workers_give_the_same_names(trained_registry, start_server):
    """Replica independence: whichever worker answers, the same seed gives the same names."""
    server = start_server(trained_registry, WORKERS="2")
    # No keep-alive, requests in parallel: each request is a new connection that either worker may accept.
    with httpx.Client(base_url=server.url, timeout=20, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        def ready():
            try:
                return c.get("/readyz").status_code == 200
            except httpx.TransportError:  # the parent has bound the port; workers still starting
                return False
        wait_until(ready, timeout=60)
        def names(_):
            return tuple(x["name"] for x in c.post("/generate", json={"count": 10, "seed": 77}).json()["names"])
        with ThreadPoolExecutor(4) as pool:
            answers = set(pool.map(names, range(40)))
    assert len(answers) == 1


def test_requests_beyond_max_in_flight_get_503_not_a_queue(trained_registry, start_server):
    server = start_server(trained_registry, CACHE_ROWS="0", MAX_IN_FLIGHT="1")
    body = {"count": 1000, "max_length": 64, "temperature": 10, "seed": 1}
    statuses, retry_after = [], []

    def post():
        r = httpx.post(f"{server.url}/generate", json=body, timeout=60)
        statuses.append(r.status_code)
        if r.status_code == 503:
            retry_after.append(r.headers.get("retry-after"))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses)[0] == 200
    assert 503 in statuses
    assert retry_after and all(r == "1" for r in retry_after)
    assert metric(httpx.get(f"{server.url}/metrics").text, "namegen_busy_rejections_total") == statuses.count(503)
