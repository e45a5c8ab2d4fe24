"""Access against real servers: requests without a token, with a wrong one, with one lacking the
scope; the token file swapped under load (no valid token refused); a client at twice its rate
beside one at half of its own, through one worker, two (the rate table shared by the workers), and
two servers started at once on one table file (what the replicas of one host do)."""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from reliability_helpers import Load
from service import tokens
from service.api.auth import CHECK_EVERY


def token_file(path, **specs) -> dict[str, str]:
    """Write a token file of fresh tokens, spec per name: (scopes, rate, burst); returns {name: token}."""
    made = {name: tokens.new_token() for name in specs}
    tokens.save(path, [tokens.Token(n, tokens.digest(made[n]), frozenset(s.split(",")), rate, burst)
                       for n, (s, rate, burst) in specs.items()])
    return made


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Connection": "close"}


def test_no_token_a_wrong_token_and_a_wrong_scope_are_refused(registry, start_server, tmp_path, figure):
    made = token_file(tmp_path / "tokens.json", gen=("generate", None, None), reader=("read", None, None))
    server = start_server(registry, tokens_file=tmp_path / "tokens.json")
    cases = {  # (path, headers) -> status
        ("/generate?count=1", None): 401, ("/score", None): 401, ("/model", None): 401, ("/metrics", None): 401,
        ("/v2/models/names/infer", None): 401,
        ("/generate?count=1", "ng_" + "A" * 43): 401, ("/metrics", made["gen"] + "x"): 401,
        ("/generate?count=1", made["gen"][:-1]): 401,
        ("/generate?count=1", made["reader"]): 403, ("/score", made["gen"]): 403, ("/metrics", made["gen"]): 403,
        ("/generate?count=1", made["gen"]): 200, ("/metrics", made["reader"]): 200, ("/model", made["reader"]): 200,
        ("/healthz", None): 200, ("/readyz", None): 200, ("/", None): 200,
    }
    for (path, token), status in cases.items():
        method = "POST" if path == "/score" or path.endswith("/infer") else "GET"
        r = httpx.request(method, server.url + path, headers=bearer(token) if token else {}, timeout=10,
                          **({"json": {"names": ["emma"]}} if method == "POST" else {}))
        assert r.status_code == status, (path, token and token[:6], r.text)
        if status in (401, 403):
            assert r.headers["www-authenticate"].startswith('Bearer realm="namegen"')
            assert r.json()["detail"][0]["field"] == "authorization"
    text = server.text()
    assert not any(t in text for t in made.values())
    named = [x.get("token") for x in server.logs() if x.get("msg") == "request"]
    assert named.count("gen") == 3 and named.count("reader") == 3
    figure("refusals: no token, wrong token, wrong scope",
           f"{len(cases)} requests, each the expected status (401 x 8, 403 x 3, 200 x 6); no token in the log")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_token_file_swapped_under_load_never_refuses_a_valid_token(registry, start_server, tmp_path, figure,
                                                                      workers):
    path = tmp_path / "tokens.json"
    made = token_file(path, steady=("generate", None, None), rotating0=("generate", None, None))
    steady = made["steady"]
    server = start_server(registry, tokens_file=path, workers=workers)
    load = Load(server.url, threads=3, params="count=3", headers=bearer(steady))
    previous = made["rotating0"]
    swaps = 6
    try:
        for i in range(1, swaps + 1):
            fresh = tokens.new_token()
            kept = [t for t in tokens.load(path) if t.name == "steady"]
            tokens.save(path, [*kept, tokens.Token(f"rotating{i}", tokens.digest(fresh), frozenset({"generate"}))])
            if workers == 1 and i == swaps // 2:
                server.signal(signal.SIGHUP)  # also read at once on SIGHUP
            time.sleep(CHECK_EVERY + 0.5)  # every worker has looked at the file since
            for _ in range(4):
                assert httpx.get(f"{server.url}/generate?count=1", headers=bearer(fresh), timeout=10).status_code == 200
                assert httpx.get(f"{server.url}/generate?count=1", headers=bearer(previous),
                                 timeout=10).status_code == 401
            previous = fresh
    finally:
        results = load.finish()
    assert len(results) > 20 and load.failures() == []
    figure(f"token file swapped under load, {workers} worker(s)",
           f"{swaps} swaps, {len(results)} requests with the kept token, 0 refused; each new token served "
           f"and each replaced one refused (401) {CHECK_EVERY + 0.5:g} s after its swap")


def paced(urls: list[str], token: str, count: int, per_second: float, seconds: float, out: list) -> None:
    """Send /generate?count=count at per_second requests a second for `seconds`, each at its time
    from a pool of threads (a slow answer does not delay the next request), on a new connection (so
    two workers share them) and to the servers in turn; record (status, headers, body) per request."""
    def send(url: str) -> None:
        r = httpx.get(f"{url}/generate?count={count}", headers=bearer(token), timeout=30)
        out.append((r.status_code, r.headers, r.json()))

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        n = 0
        while (due := start + n / per_second) < start + seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            pool.submit(send, urls[n % len(urls)])
            n += 1


@pytest.mark.parametrize("workers,servers", [(1, 1), (2, 1), (1, 2)])
def test_a_client_over_its_rate_is_refused_the_excess_and_one_under_it_nothing(registry, start_server, tmp_path,
                                                                                figure, workers, servers):
    # Rates low enough that a loaded machine still sends at 2x: the test counts names, it does not time.
    rate, burst, seconds = 20, 20, 6.0
    made = token_file(tmp_path / "tokens.json", over=("generate", rate, burst), under=("generate", rate, burst))
    # Several servers: started at once on one table file that none has made yet, as replicas start.
    shared = {"rate_table": tmp_path / "rates" / "table"} if servers > 1 else {}
    (tmp_path / "rates").mkdir()
    with ThreadPoolExecutor(servers) as pool:
        started = list(pool.map(lambda _: start_server(registry, tokens_file=tmp_path / "tokens.json",
                                                       workers=workers, **shared), range(servers)))
    urls = [server.url for server in started]
    over, under = [], []
    threads = [threading.Thread(target=paced, args=(urls, made["over"], 4, 2 * rate / 4, seconds, over)),
               threading.Thread(target=paced, args=(urls, made["under"], 2, 0.5 * rate / 2, seconds, under))]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start  # from the first request to the last answer
    asked = 4 * len(over)
    assert len(over) == 2 * rate / 4 * seconds and len(under) == 0.5 * rate / 2 * seconds  # every answer came
    assert [s for s, _, _ in under if s != 200] == []  # the client within its rate: never refused
    served = sum(len(body["names"]) for s, _, body in over if s == 200)
    refused = [(h, body) for s, h, body in over if s == 429]
    assert len(refused) + sum(s == 200 for s, _, _ in over) == len(over)  # 200 or 429, nothing else
    allowed = burst + rate * elapsed  # the most a token bucket can give over the run
    assert served <= allowed, (served, allowed)  # one rate for the client, however many workers
    assert served >= 0.7 * rate * seconds  # and the client gets its rate, not less
    assert refused and asked - served >= 0.7 * (asked - allowed)  # the excess is refused
    headers = refused[0][0]
    assert int(headers["retry-after"]) >= 1
    assert headers["ratelimit-policy"] == f'"names";q={burst};w={burst // rate or 1}'
    assert headers["ratelimit"].startswith('"names";r=')
    pids = {x["pid"] for server in started for x in server.logs() if x.get("msg") == "request"
            and x.get("token") == "over" and x.get("status") == 200}
    assert len(pids) == workers * servers  # every worker of every server served the client over its rate
    if servers > 1:
        assert os.listdir(tmp_path / "rates") == ["table"]  # one table made, nothing left beside it
    where = f"{servers} servers on one table file" if servers > 1 else f"{workers} worker(s)"
    figure(f"a client at 2x its rate beside one at 0.5x, {where}",
           f"rate {rate} names/s, burst {burst}, {elapsed:.1f} s: over asked {asked} names, served {served} "
           f"(bound burst + rate x time = {allowed:.0f}), {len(refused)} of {len(over)} requests 429; "
           f"under: {len(under)} requests, 0 refused")
