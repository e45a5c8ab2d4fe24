"""2,000 slow connections against a real server (the issue's attack): silent ones, headers a byte at a
time, bodies that stop. The server keeps answering others (503 at once past its connection cap, 200
under it: a slow body past the cap gets that 503 too), sheds every slow connection by its timeouts, and its memory and file descriptors
come back."""
import resource
import socket
import time

import httpx

from reliability_helpers import open_fds, status_kb, wait_until

CONNECTIONS = 2000
TIMEOUTS = {"KEEP_ALIVE": "5", "HEADER_TIMEOUT": "5", "BODY_TIMEOUT": "5",  # short, to keep the run short
            "MAX_CLIENT_CONNECTIONS": "4000"}  # the worker's cap and timeouts here; the per-address limit: test_edge_abuse.py


def test_slow_clients_are_shed_and_the_server_keeps_serving(registry, start_server, figure):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 3 * CONNECTIONS)), hard))
    server = start_server(registry, **TIMEOUTS)
    pid = server.pid
    host, port = server.url.removeprefix("http://").split(":")
    fds, rss = open_fds(pid), status_kb(pid, "VmRSS")
    socks = []
    started = time.monotonic()
    for i in range(CONNECTIONS):
        s = socket.create_connection((host, int(port)), timeout=30)
        if i % 3 == 1:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers that never end
        elif i % 3 == 2:
            s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"count\"")  # a body that stops
        socks.append(s)  # i % 3 == 0: silent
    opened = time.monotonic() - started
    peak_fds = peak_rss = 0
    for _ in range(20):  # while the server accepts them from the backlog
        peak_fds, peak_rss = max(peak_fds, open_fds(pid)), max(peak_rss, status_kb(pid, "VmRSS"))
        time.sleep(0.1)
    assert peak_fds > fds + CONNECTIONS / 2
    r = httpx.get(f"{server.url}/healthz", timeout=10)  # past the cap (512): refused at once, not hung
    assert r.status_code == 503 and r.headers["retry-after"]
    answers = {"silent": set(), "headers": set(), "body": set()}
    refused_at_once = 0
    for i, s in enumerate(socks):
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        kind = ("silent", "headers", "body")[i % 3]
        answers[kind].add(data.split(b"\r\n", 1)[0].decode())
        refused_at_once += data.startswith(b"HTTP/1.1 503")
        s.close()
    shed = time.monotonic() - started
    assert answers["silent"] == {""}  # closed after NAMEGEN_KEEP_ALIVE
    assert answers["headers"] == {"HTTP/1.1 408 Request Timeout"}
    # a complete head past the connection cap is refused at once; the others time out waiting for the body
    assert answers["body"] <= {"HTTP/1.1 408 Request Timeout", "HTTP/1.1 503 Service Unavailable"}
    assert shed < 5 + 15  # the longest timeout, plus the time to open them all on a busy machine
    wait_until(lambda: open_fds(pid) <= fds + 2, timeout=10)
    assert server.healthy()
    after_rss = status_kb(pid, "VmRSS")
    assert peak_rss - rss < 100_000  # kB
    assert not [x for x in server.logs() if x["level"] == "error"]
    figure(f"slow clients: {CONNECTIONS} connections, fds before/peak/after",
           f"{fds}/{peak_fds}/{open_fds(pid)}")
    figure("slow clients: RSS before/peak/after MB", f"{rss / 1000:.0f}/{peak_rss / 1000:.0f}/{after_rss / 1000:.0f}")
    figure("slow clients: opened in, all shed (408, 503 or closed) after, s", f"{opened:.1f}, {shed:.1f}")
    figure("slow clients: refused at once past the connection cap (503)", refused_at_once)
