"""The worst allowed request of each endpoint, on the shipped model: the peak RSS it adds to an idle
worker and the CPU it costs, alone and NAMEGEN_MAX_IN_FLIGHT at once, against the pod's memory limit
(deploy/k8s/deployment.yaml).

The gate admits work, not requests: its budget is MAX_IN_FLIGHT x the largest request, so
MAX_IN_FLIGHT worst requests at once are all admitted (each case checks that they were) and their
measured peak must fit the limit. The product base + MAX_IN_FLIGHT x (the first request's
increment) is reported beside it: that increment is mostly a one-off per worker (the context cache
filling up to NAMEGEN_CACHE_ROWS and renewed, the heap's high-water mark of the transients that
one request's parsing and answer writing make on the event loop, one request at a time), so for
/score the sweep below measures what each further request in flight adds, and bounds that by what
a request holds between admission and its answer: its encoded rows and its answer (streamed in
pieces, so at most its whole text)."""
import json
import random
import re
import string
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from reliability_helpers import ROOT, cpu_seconds, reset_peak, status_kb

MAX_IN_FLIGHT = 16  # the default NAMEGEN_MAX_IN_FLIGHT
MAX_BODY = 65536  # the default NAMEGEN_MAX_BODY_BYTES
CPU_BOUND = 5.0  # seconds of CPU for one worst request, on a shared 2-core machine
SWEEP = (1, 2, 4, 8, 16)  # worst /score requests at once, each on a fresh worker
ROW_BYTES = 9  # what a /score request holds per row while in flight: its target (1 byte) and value (float64);
# the context keys exist one chunk (SCORE_CHUNK rows) at a time


def pod_memory_limit_mb() -> float:
    text = (ROOT / "deploy/k8s/deployment.yaml").read_text()
    return float(re.findall(r"limits: \{cpu: [^,]+, memory: (\d+)Mi\}", text)[-1]) * 1.048576  # MiB -> MB


def worst_score_body() -> bytes:
    """As many names as allowed (1,000), as long as the body limit lets them be (random letters),
    each character's value asked for (the largest answer)."""
    rng = random.Random(0)
    for length in range(64, 0, -1):
        names = ["".join(rng.choice(string.ascii_lowercase) for _ in range(length)) for _ in range(1000)]
        data = json.dumps({"names": names, "per_char": True}, separators=(",", ":")).encode()
        if len(data) <= MAX_BODY:
            return data
    raise AssertionError("no /score body fits")


SCORE = "POST /score (1,000 names filling 64 KB, per_char)"
WORST = {  # endpoint -> (method, path, body)
    "POST /generate (1,000 names of 64, temperature 10)": (
        "POST", "/generate", json.dumps({"count": 1000, "max_length": 64, "temperature": 10, "seed": 1}).encode()),
    "POST /generate (novel_only, greedy)": (
        "POST", "/generate", json.dumps({"count": 1000, "max_length": 64, "top_k": 1, "novel_only": True,
                                         "seed": 2}).encode()),
    "GET /generate (1,000 names of 64, temperature 10)": (
        "GET", "/generate?count=1000&max_length=64&temperature=10&seed=3", None),
    SCORE: ("POST", "/score", worst_score_body()),
    "GET /model": ("GET", "/model", None),
    "GET /metrics": ("GET", "/metrics", None),
    "GET /openapi.json": ("GET", "/openapi.json", None),
}


@pytest.fixture
def server(registry, start_server):
    """A fresh worker per case: the allocator keeps what an earlier case took, which would count."""
    return start_server(registry, max_in_flight=MAX_IN_FLIGHT)


def call(url, method, path, content):
    headers = {"content-type": "application/json"} if content is not None else {}
    return httpx.request(method, f"{url}{path}", content=content, headers=headers, timeout=120)


def measure(server, method, path, content, copies):
    """(RSS before in MB, peak RSS over the run in MB, CPU seconds, responses)."""
    pid = server.pid
    before = status_kb(pid, "VmRSS")
    reset_peak(pid)
    cpu = cpu_seconds(pid)
    with ThreadPoolExecutor(copies) as pool:
        responses = list(pool.map(lambda _: call(server.url, method, path, content), range(copies)))
    peak = status_kb(pid, "VmHWM")
    return before / 1000, peak / 1000, cpu_seconds(pid) - cpu, responses


@pytest.mark.parametrize("case", list(WORST))
def test_worst_request_alone_and_max_in_flight_at_once_fit_the_pod(server, case, figure):
    method, path, content = WORST[case]
    limit = pod_memory_limit_mb()
    base, peak, cpu, responses = measure(server, method, path, content, 1)
    alone = peak - base
    figure(f"worst {case}: alone, +MB peak RSS over the idle worker's {base:.0f} MB, CPU s",
           f"+{alone:.1f} MB, {cpu:.2f} s")
    assert [r.status_code for r in responses] == [200]
    figure(f"worst {case}: base + {MAX_IN_FLIGHT} x alone, MB (limit {limit:.0f})",
           f"{base + MAX_IN_FLIGHT * alone:.0f}")
    _, peak, cpu_all, responses = measure(server, method, path, content, MAX_IN_FLIGHT)
    figure(f"worst {case}: {MAX_IN_FLIGHT} at once, peak RSS MB (limit {limit:.0f}), CPU s",
           f"{peak:.0f}, {cpu_all:.2f} s")
    assert [r.status_code for r in responses] == [200] * MAX_IN_FLIGHT  # the budget admits them all: none shed
    assert cpu <= CPU_BOUND
    assert peak <= limit  # every slot of the gate taken by the worst request, measured
    if case == SCORE:  # the product, as if nothing were shared (/generate's is reported, not asserted)
        assert base + MAX_IN_FLIGHT * alone <= limit


def test_worst_score_costs_each_further_request_in_flight_at_most_what_it_holds(registry, start_server, figure):
    """The worst /score N at once, each N on a fresh worker: the first one's increment over the idle
    worker is not repeated (a second one alone on the same worker hardly raises its peak; whether
    the allocator kept the memory or returned it in between), and the increment grows with N
    by no more than what one request holds in flight (its rows, 9 bytes each, and its answer;
    parsing and answer writing run one request at a time on the event loop). So the bound is the
    first increment, once, plus MAX_IN_FLIGHT x that holding, and it must fit the pod."""
    method, path, content = WORST[SCORE]
    limit = pod_memory_limit_mb()
    names = json.loads(content)["names"]
    rows = sum(len(name) + 1 for name in names)  # each character, then the end
    increments, bases = {}, {}
    for n in SWEEP:
        server = start_server(registry, max_in_flight=MAX_IN_FLIGHT)
        bases[n], peak, _, responses = measure(server, method, path, content, n)
        assert [r.status_code for r in responses] == [200] * n
        assert peak <= limit
        increments[n] = peak - bases[n]
        if n == 1:  # the same request again, alone on the worker it has already passed through
            again = measure(server, method, path, content, 1)[1] - peak  # how far it raises the worker's peak
        server.stop()
    held = (rows * ROW_BYTES + len(responses[0].content)) / 1e6  # MB one request holds while in flight
    first, most = increments[SWEEP[0]], increments[SWEEP[-1]]
    per_request = (most - first) / (SWEEP[-1] - SWEEP[0])
    bound = max(bases.values()) + first + MAX_IN_FLIGHT * held
    figure(f"worst /score at once {list(SWEEP)}: +MB over the idle worker (base {min(bases.values()):.0f}-"
           f"{max(bases.values()):.0f} MB)", ", ".join(f"{n}: +{increments[n]:.1f}" for n in SWEEP))
    figure("worst /score: +MB a second one alone raises the same worker's peak, MB each further request "
           "in flight adds (fit 1 -> 16), MB one holds in flight (rows + answer)",
           f"+{again:.1f}, {per_request:.1f}, {held:.1f}")
    figure(f"worst /score: base + first increment + {MAX_IN_FLIGHT} x held, MB (limit {limit:.0f})", f"{bound:.0f}")
    assert again <= held  # the first request's increment is a one-off of the worker, not repeated per request
    assert per_request <= held  # nothing per request beyond its rows and its answer stays in memory
    assert bound <= limit
