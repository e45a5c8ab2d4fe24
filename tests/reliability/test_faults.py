"""Faults under load: bad versions published, publishes killed at random moments, SIGTERM with
requests in flight, a worker killed. No request is lost but the one in flight on a killed worker."""
import json
import random
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from artifact.loader import load_version
from artifact.registry import STAGES, current_version, list_versions, version_path
from reliability_helpers import NAME, ROOT, Load, new_version, staged_copy, wait_until
from service_helpers import metric


def readyz(url):
    return httpx.get(f"{url}/readyz", timeout=10).json()


def served(url):
    return readyz(url).get("model", {}).get("version")


def test_corrupt_and_incomplete_versions_published_under_load_cost_no_request(registry, start_server, figure):
    server = start_server(registry)
    first = served(server.url)
    load = Load(server.url)
    try:
        wait_until(lambda: len(load.results) > 20)
        corrupt = new_version(registry, damage="corrupt")
        wait_until(lambda: readyz(server.url)["reload"] == {"refused": corrupt, "reason": "checksum_mismatch"})
        incomplete = new_version(registry, damage="missing")  # CURRENT names it before model.onnx arrived
        wait_until(lambda: readyz(server.url)["reload"] == {"refused": incomplete, "reason": "files_missing"})
        assert served(server.url) == first  # the old model kept serving through both
        arrived = time.monotonic()
        model = version_path(registry, NAME, first) / "model.onnx"
        (version_path(registry, NAME, incomplete) / "model.onnx").write_bytes(model.read_bytes())
        wait_until(lambda: served(server.url) == incomplete, timeout=30)  # retried with backoff, then served
        picked_up = time.monotonic() - arrived
        assert readyz(server.url)["reload"] == {"refused": None, "reason": None}
        mark = len(load.results)
        wait_until(lambda: len(load.results) > mark + 20)
    finally:
        results = load.finish()
    assert load.failures() == []
    assert {v for _, v, _ in results} == {first, incomplete}
    figure("faults: corrupt + incomplete version under load: requests, failed",
           f"{len(results)}, {len(load.failures())}")
    figure("faults: incomplete version served after its file arrived, s", f"{picked_up:.1f}")


PUBLISH = """
import sys
from artifact.registry import publish
publish(sys.argv[1], sys.argv[2], "names", force=True)
print("published", flush=True)
"""


def start_publish(staging, registry, pause_at=None):
    env = {"PYTHONPATH": str(ROOT), **({"ARTIFACT_PUBLISH_PAUSE_AT": pause_at} if pause_at else {})}
    return subprocess.Popen([sys.executable, "-c", PUBLISH, str(staging), str(registry)], cwd=ROOT,
                            env={**__import__("os").environ, **env}, stdout=subprocess.PIPE, text=True)


def assert_consistent(registry):
    """CURRENT names a version that loads, and every visible version loads: nothing half-written."""
    current = current_version(registry, NAME)
    for version in list_versions(registry, NAME):
        load_version(version_path(registry, NAME, version))
    assert current in list_versions(registry, NAME)
    return current


def test_publish_killed_at_every_stage_and_random_moments_leaves_a_consistent_registry(
        registry, start_server, tmp_path, figure):
    stagings = (staged_copy(registry, tmp_path / f"staging{i}", i) for i in range(100))
    server = start_server(registry)
    load = Load(server.url)
    kills, rng = 0, random.Random(20261125)
    try:
        started = time.monotonic()
        proc = start_publish(next(stagings), registry)  # one whole publish: how long one takes
        assert proc.wait(60) == 0
        whole = time.monotonic() - started
        for stage in STAGES[:-1]:  # killed while paused at each stage
            proc = start_publish(next(stagings), registry, pause_at=stage)
            assert proc.stdout.readline().strip() == f"paused at {stage}"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            assert_consistent(registry)
        for _ in range(10):  # killed at random moments of a whole publish
            proc = start_publish(next(stagings), registry)
            time.sleep(rng.uniform(0, whole))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            assert_consistent(registry)
        current = assert_consistent(registry)
        wait_until(lambda: served(server.url) == current, timeout=30)
    finally:
        results = load.finish()
    assert load.failures() == []
    figure("faults: publishes SIGKILLed (each stage + random moments), registry consistent after each",
           f"{kills} ({len(STAGES) - 1} + {kills - len(STAGES) + 1}); one publish {whole:.1f} s")
    figure("faults: requests during the killed publishes, failed", f"{len(results)}, {len(load.failures())}")


def held_posts(url: str, path: str, bodies: list[bytes]) -> list[socket.socket]:
    """One connection per body, each request sent but for its last byte: the server holds them all."""
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for body in bodies:
        s = socket.create_connection((host, int(port)), timeout=120)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:-1])
        socks.append(s)
    return socks


def status_of(s: socket.socket) -> int:
    """The status of the response on a closing connection (read to its end)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1])


def test_sigterm_with_requests_in_flight_lets_every_one_finish(registry, start_server, figure):
    server = start_server(registry, cache_rows=0)  # no cache: each request takes a noticeable time
    bodies = [json.dumps({"count": 500, "max_length": 64, "temperature": 10, "seed": i}).encode() for i in range(8)]
    socks = held_posts(server.url, "/generate", bodies)
    for s in socks:  # the last bytes together: all 8 are admitted before the first one can finish
        s.sendall(bodies[0][-1:])
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(status_of, s) for s in socks]
        in_flight = wait_until(lambda: (n := metric(httpx.get(f"{server.url}/metrics").text,
                                                     "namegen_in_flight")) >= 8 and n, timeout=30, interval=0.01)
        server.signal(signal.SIGTERM)
        statuses = [f.result() for f in futures]
    code = server.proc.wait(60)
    assert statuses == [200] * 8
    assert code in (0, -signal.SIGTERM)
    figure("faults: SIGTERM with 8 requests in flight: in flight at the signal, answered 200",
           f"{in_flight:.0f}, {statuses.count(200)} of 8")


def test_killed_worker_loses_only_its_requests_in_flight(registry, start_server, figure):
    server = start_server(registry, workers=2)
    before = wait_until(lambda: len(server.workers()) == 2 and server.workers())
    load = Load(server.url, threads=2)
    try:
        wait_until(lambda: len(load.results) > 40)
        victim = before[0]
        killed_at = time.monotonic()
        __import__("os").kill(victim, signal.SIGKILL)
        after = wait_until(lambda: len(server.workers()) == 2 and victim not in server.workers() and server.workers(),
                           timeout=30)
        mark = len(load.results)
        wait_until(lambda: len(load.results) > mark + 40)
    finally:
        results = load.finish()
    lost = load.failures()
    assert len(lost) <= 2  # at most the request in flight of each client thread, on the killed worker
    assert all(abs(t - killed_at) < 2 for _, _, t in lost)
    assert set(after) - set(before)  # the supervisor replaced the worker
    assert server.healthy()
    figure("faults: worker SIGKILLed under 2-thread load: requests, lost (in flight on it)",
           f"{len(results)}, {len(lost)}")
