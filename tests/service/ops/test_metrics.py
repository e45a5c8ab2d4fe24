"""/metrics of a real server with two workers adds up both (service/ops/metrics.py, metrics_dir.py)."""
import httpx
from service_helpers import metric, wait_until


def test_every_scrape_counts_the_requests_of_every_worker(trained_registry, start_server):
    server = start_server(trained_registry, WORKERS="2", NAMEGEN_MAX_COUNTT="3")
    wait_until(lambda: httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200, timeout=60,
               ignore=(httpx.HTTPError,))
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        r = httpx.get(f"{server.url}/generate?count=1&seed=1", headers={"Connection": "close"})
        assert r.status_code == 200
    pids = {line["pid"] for line in server.logs() if line.get("msg") == "request"}
    shared = [x for x in server.logs() if "NAMEGEN_MAX_COUNTT" in x.get("msg", "")]
    assert shared and shared[0]["level"] == "warning"  # the typo is named at start
    counts = set()
    for _ in range(8):
        text = httpx.get(f"{server.url}/metrics", headers={"Connection": "close"}).text
        counts.add(metric(text, "namegen_requests_total", route="/generate", method="GET", status="200"))
        assert metric(text, "namegen_names_generated_total") == 40
        assert metric(text, "namegen_ready") == 1
    assert counts == {40.0}
    assert len(pids) == 2  # both workers answered some: one worker's counts alone would be short of 40
