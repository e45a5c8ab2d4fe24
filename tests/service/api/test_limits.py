"""Rates per client in names: token buckets that refuse past the burst, refill at the rate, keep
clients apart, are shared through one table file (made once, atomically, for every server naming
it), and a 429 with Retry-After and RateLimit fields."""
import multiprocessing
import os
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException

from service.api import limits
from service.api.app import create_app


def test_a_bucket_gives_its_burst_then_refuses_with_the_wait_for_the_rest():
    limiter = limits.Limiter(rate=10, burst=100)
    assert limiter.take("a", 60) is None
    assert limiter.take("a", 40) is None
    refused = limiter.take("a", 30)
    assert refused is not None and refused.remaining == 0 and refused.retry_after == 3
    assert refused.policy == '"names";q=100;w=10'


def test_a_bucket_refills_at_its_rate():
    limiter = limits.Limiter(rate=1000, burst=50)
    assert limiter.take("a", 50) is None
    assert limiter.take("a", 20) is not None
    time.sleep(0.05)  # 50 names' worth at 1000/s
    assert limiter.take("a", 20) is None


def test_a_client_over_its_rate_does_not_take_from_another():
    limiter = limits.Limiter(rate=1, burst=10)
    refusals = sum(limiter.take("greedy", 5) is not None for _ in range(100))
    assert refusals == 98
    assert all(limiter.take(f"other{i}", 10) is None for i in range(2000))  # many clients, each its own burst


def test_a_token_may_carry_its_own_rate_and_burst():
    limiter = limits.Limiter(rate=1, burst=10)
    assert limiter.take("big", 500, rate=100, burst=500) is None
    assert limiter.take("small", 11) is not None


def test_a_refund_gives_back_up_to_the_burst():
    limiter = limits.Limiter(rate=0.001, burst=10)
    assert limiter.take("a", 10) is None
    limiter.take("a", -4)
    assert limiter.take("a", 4) is None and limiter.take("a", 1) is not None
    limiter.take("a", -1000)
    assert limiter.take("a", 11) is not None and limiter.take("a", 10) is None


def _take_in_another_process(table, cost, out):
    limiter = limits.Limiter(rate=0.001, burst=100, table=table)
    out.put(limiter.take("shared", cost) is None)
    limiter.close()


def test_processes_on_one_table_share_each_clients_bucket(tmp_path):
    table = limits.create_table(str(tmp_path))
    here = limits.Limiter(rate=0.001, burst=100, table=table)
    assert here.take("shared", 70) is None
    out = multiprocessing.get_context("spawn").Queue()
    p = multiprocessing.get_context("spawn").Process(target=_take_in_another_process, args=(table, 40, out))
    p.start()
    p.join(60)
    assert out.get(timeout=5) is False  # 70 + 40 > 100: the other process saw this one's take
    assert here.take("shared", 30) is None
    here.close()


def test_a_shared_table_is_made_once_then_opened_with_its_buckets(tmp_path):
    path = tmp_path / "table"
    first = limits.Limiter(rate=0.001, burst=100, table=limits.shared_table(path))
    assert first.take("shared", 70) is None
    second = limits.Limiter(rate=0.001, burst=100, table=limits.shared_table(path))  # another server, later
    assert second.take("shared", 40) is not None and second.take("shared", 30) is None
    assert os.listdir(tmp_path) == ["table"] and path.stat().st_size == limits.SIZE  # no file left beside it
    first.close(), second.close()


def test_a_server_that_loses_the_race_to_make_the_table_uses_the_winners(tmp_path, monkeypatch):
    path = tmp_path / "table"
    make = limits.create_table

    def another_server_links_first(directory):
        mine = make(directory)
        theirs = make(directory)
        os.link(theirs, path)
        theirs.unlink()
        winner = limits.Limiter(rate=0.001, burst=100, table=path)
        assert winner.take("shared", 70) is None
        winner.close()
        return mine

    monkeypatch.setattr(limits, "create_table", another_server_links_first)
    limiter = limits.Limiter(rate=0.001, burst=100, table=limits.shared_table(path))
    assert limiter.take("shared", 40) is not None  # the winner's buckets, not a fresh table over them
    assert os.listdir(tmp_path) == ["table"]
    limiter.close()


def test_a_table_of_another_size_or_in_no_directory_is_refused_naming_the_file(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"\0" * 10)
    with pytest.raises(limits.TableError, match=f"^{short} is 10 bytes, not a rate table of this version"):
        limits.shared_table(short)
    with pytest.raises(limits.TableError, match=f"^{tmp_path / 'no' / 'table'}: No such file or directory$"):
        limits.shared_table(tmp_path / "no" / "table")


def test_python_m_service_with_a_bad_rate_table_prints_one_line_and_exits_2(tmp_path):
    table = tmp_path / "table"
    table.write_bytes(b"\0" * 10)
    env = {**os.environ, "NAMEGEN_RATE": "1", "NAMEGEN_RATE_TABLE": str(table)}
    done = subprocess.run([sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"namegen: NAMEGEN_RATE_TABLE: {table} is 10 bytes, not a rate "
                                                f"table of this version ({limits.SIZE} bytes): remove it while no "
                                                "server uses it, or name another file"]


@pytest.fixture
def limited(registry, settings_for):
    app = create_app(settings_for(registry, rate=1, burst=20))
    with TestClient(app) as c:
        yield c


def test_requests_past_the_rate_get_429_with_retry_after_and_ratelimit_fields(limited):
    assert limited.get("/generate?count=15").status_code == 200
    r = limited.get("/generate?count=10")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "5"
    assert r.headers["ratelimit-policy"] == '"names";q=20;w=20'
    assert r.headers["ratelimit"] == '"names";r=5;t=5'
    assert limited.get("/generate?count=5").status_code == 200  # the refused request took nothing
    assert limited.post("/score", json={"names": ["emma", "olivia"]}).status_code == 429  # per name scored


def test_without_a_rate_nothing_is_limited(client):
    assert all(client.get("/generate?count=1000").status_code == 200 for _ in range(3))


def test_without_tokens_each_client_address_has_its_own_bucket():
    import asyncio

    from service.api.auth import Access, AuthMiddleware

    async def app(scope, receive, send):
        limits.charge(scope, 10)

    middleware = AuthMiddleware(app, Access(None, limits.Limiter(rate=0.001, burst=10)))

    def call(address: str, path: str = "/generate"):
        asyncio.run(middleware({"type": "http", "path": path, "headers": [], "client": (address, 1)}, None, None))

    call("10.0.0.1")
    with pytest.raises(HTTPException, match="over this client.s rate"):
        call("10.0.0.1")
    call("10.0.0.2")  # another address: its own bucket
    call("10.0.0.1", "/healthz")  # open paths are not counted against anyone


def test_a_request_larger_than_the_burst_is_told_to_ask_for_fewer(registry, settings_for):
    with TestClient(create_app(settings_for(registry, rate=1000, burst=50))) as c:
        r = c.get("/generate?count=51")
        assert r.status_code == 429 and "ask for fewer" in r.json()["detail"][0]["message"]
        assert c.get("/generate?count=50").status_code == 200
