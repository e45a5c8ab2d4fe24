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


def test_requests_answered_together_are_each_counted_in_the_histogram(trained_registry, start_server):
    """Under concurrent load one event-loop pass answers several requests, whose counts are written
    together: every request is still in the count, the sum and exactly one bucket."""
    import asyncio
    import time

    server = start_server(trained_registry)
    wait_until(lambda: httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200, timeout=60,
               ignore=(httpx.HTTPError,))

    async def load():
        async with httpx.AsyncClient(base_url=server.url, limits=httpx.Limits(max_connections=16)) as c:
            rs = await asyncio.gather(*[c.get("/generate?count=1" if i % 2 else "/healthz") for i in range(200)])
        assert all(r.status_code == 200 for r in rs)

    start = time.monotonic()
    asyncio.run(load())
    took = time.monotonic() - start
    text = httpx.get(f"{server.url}/metrics").text
    for route in ("/healthz", "/generate"):
        labels = {"route": route, "method": "GET", "status": "200"}
        count = metric(text, "namegen_request_duration_seconds_count", **labels)
        assert count == metric(text, "namegen_requests_total", **labels) == 100
        buckets = [float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith("namegen_request_duration_seconds_bucket{") and f'route="{route}"' in line]
        assert len(buckets) == 14 and buckets == sorted(buckets) and buckets[-1] == 100  # cumulative, +Inf last
        assert 0 < metric(text, "namegen_request_duration_seconds_sum", **labels) < 100 * took
    assert metric(text, "namegen_names_generated_total", model="names") == 100
    assert metric(text, "namegen_in_flight") == 0
