"""A request cannot forge a line or a field of the text log (the default format), against a real server."""
import json
import re
import socket

import httpx

from reliability_helpers import wait_until

RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ ")
PAIR = re.compile(r' (\w+)=("(?:[^"\\]|\\.)*"|\S+)')

FORGED_LINE = "2026-11-25 17:00:00,000 INFO namegen.access request request_id=FORGED method=GET path=/ status=200"


def raw_request(url: str, request_line: bytes, headers: bytes = b"") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request_line + b"\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def access_records(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if " namegen.access request " in line:
            out.append({k: json.loads(v) if v.startswith('"') else v for k, v in PAIR.findall(line)})
    return out


def test_text_log_lines_cannot_be_forged_by_path_query_or_headers(registry, start_server, figure):
    server = start_server(registry, LOG_FORMAT="text")
    attacks = [
        (b"GET /healthz%0A" + FORGED_LINE.replace(" ", "%20").encode() + b" HTTP/1.1", b""),
        (b"GET /healthz%0D%0A%1B[2J%E2%80%A8x HTTP/1.1", b""),
        (b"GET /generate?count=1%0A" + FORGED_LINE.replace(" ", "%20").encode() + b" HTTP/1.1", b""),
        (b"GET /healthz HTTP/1.1", b"X-Request-ID: abc method=POST path=/admin status=200\r\n"),
        (b"GET /healthz HTTP/1.1", b"X-Request-ID: \xe2\x80\xa8FORGED\r\n"),
        (b"GET /h%22ealthz%20status=500 HTTP/1.1", b""),
    ]
    for request_line, headers in attacks:
        assert raw_request(server.url, request_line, headers).startswith(b"HTTP/1.1 ")
    assert httpx.get(f"{server.url}/healthz").status_code == 200

    def logged():  # the access line is written just after the response goes out
        text = server.text()
        return text if len([r for r in access_records(text) if r["path"] != "/readyz"]) > len(attacks) else None
    text = wait_until(logged)
    lines = text.splitlines()
    assert all(RECORD.match(line) or line.startswith("    ") for line in lines), \
        [line for line in lines if not (RECORD.match(line) or line.startswith("    "))]
    records = [r for r in access_records(text) if r["path"] != "/readyz"]  # the fixture's wait for ready
    assert len(records) == len(attacks) + 1  # one line per request, none forged
    assert "FORGED" not in {r.get("request_id") for r in records}
    assert [r["status"] for r in records][3] == "200" and records[3]["method"] == "GET"
    assert records[3]["request_id"] != "abc"  # not a plain id: replaced by a generated one
    assert records[0]["path"] == "/healthz\n" + FORGED_LINE  # the path kept whole, in one quoted value
    assert records[5]["path"] == '/h"ealthz status=500' and records[5]["status"] == "404"
    figure("log injection: forged requests / forged lines in the text log", f"{len(attacks)} / 0")
