"""A real server under the work it is meant to bound: abandoned requests stop, the worst /score
stays within its memory bound, a client within the limit is never refused."""
import json
import random
import threading
import time

import httpx
from service_helpers import metric, wait_until


def peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_worst_allowed_score_request_stays_within_its_memory_bound(trained_registry, start_server):
    """1,000 names of 61 random letters fill the 64 KB body limit: 62,000 rows, nearly all
    uncached. They go through the model SCORE_CHUNK rows at a time, and the answer is written as
    text, so the worker's peak RSS grows by a bounded amount (the engine before chunking: +124 MB
    on the shipped model)."""
    server = start_server(trained_registry)
    assert httpx.post(f"{server.url}/score", json={"names": ["anna"]}).status_code == 200
    time.sleep(0.5)  # the background warm-up of the cache has finished
    before = peak_rss_mb(server.proc.pid)
    rng = random.Random(0)
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(61)) for _ in range(1000)]
    assert len(json.dumps({"names": names})) <= 65536
    r = httpx.post(f"{server.url}/score", json={"names": names}, timeout=60)
    assert r.status_code == 200
    assert len(r.json()["scores"][999]["per_char"]) == 62
    grown = peak_rss_mb(server.proc.pid) - before
    assert grown < 40, f"peak RSS grew by {grown:.1f} MB"


def test_a_client_that_goes_away_stops_its_work(trained_registry, start_server):
    """A request far too long to finish (no cache, 200,000 names of up to 64 characters) whose
    client disconnects is taken out of the batch at the next step: it is logged as 499 and its
    work is released long before it could have completed."""
    server = start_server(trained_registry, CACHE_ROWS="0", MAX_COUNT="200000")
    body = {"count": 200_000, "max_length": 64, "temperature": 10, "seed": 1}
    started = time.monotonic()
    try:
        httpx.post(f"{server.url}/generate", json=body, timeout=0.5)
    except httpx.TimeoutException:
        pass
    wait_until(lambda: any(x.get("status") == 499 for x in server.logs()), timeout=30)
    assert time.monotonic() - started < 10  # 200,000 x 64 steps would take minutes
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "namegen_in_flight") == 0
    assert metric(text, "namegen_names_generated_total") == 0
    r = httpx.get(f"{server.url}/generate?count=3&seed=1")  # and the worker serves on
    assert r.status_code == 200


def test_clients_within_the_limit_are_never_refused(trained_registry, start_server):
    """max_in_flight (here 4) connections each sending the largest count back to back: never a 503."""
    server = start_server(trained_registry, MAX_IN_FLIGHT="4", MAX_COUNT="300")
    statuses = []

    def client(i):
        with httpx.Client(timeout=30) as c:
            for n in range(5):
                statuses.append(c.get(f"{server.url}/generate?count=300&seed={i * 10 + n}").status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 20
