"""The bad-input catalogue against a real server: each case gets a clear 4xx in the service's error
shape (naming the field when there is one), never a 5xx, and the server is healthy after all of them."""
import json
import socket

import httpx
import pytest

from reliability_helpers import wait_until

J = {"content-type": "application/json"}


def body(obj) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj).encode()


# (case, method, path, body, extra headers, expected status, expected field)
CASES = [
    ("temperature NaN", "POST", "/generate", b'{"temperature": NaN}', J, 422, "temperature"),
    ("temperature Infinity", "POST", "/generate", b'{"temperature": Infinity}', J, 422, "temperature"),
    ("temperature -Infinity", "POST", "/generate", b'{"temperature": -Infinity}', J, 422, "temperature"),
    ("temperature 1e309 (inf)", "POST", "/generate", b'{"temperature": 1e309}', J, 422, "temperature"),
    ("temperature 1e-400 (0)", "POST", "/generate", b'{"temperature": 1e-400}', J, 422, "temperature"),
    ("temperature 0", "POST", "/generate", {"temperature": 0}, J, 422, "temperature"),
    ("temperature above 10", "POST", "/generate", {"temperature": 10.001}, J, 422, "temperature"),
    ("temperature query nan", "GET", "/generate?temperature=nan", None, {}, 422, "temperature"),
    ("temperature query inf", "GET", "/generate?temperature=inf", None, {}, 422, "temperature"),
    ("count 1e400", "POST", "/generate", b'{"count": 1e400}', J, 422, "count"),
    ("count 10**30", "POST", "/generate", {"count": 10 ** 30}, J, 422, "count"),
    ("count 0", "POST", "/generate", {"count": 0}, J, 422, "count"),
    ("count -1", "POST", "/generate", {"count": -1}, J, 422, "count"),
    ("count 1001", "POST", "/generate", {"count": 1001}, J, 422, "count"),
    ("count 2.5", "POST", "/generate", {"count": 2.5}, J, 422, "count"),
    ("count true", "POST", "/generate", {"count": True}, J, 422, "count"),
    ("count as a string", "POST", "/generate", {"count": "5"}, J, 422, "count"),
    ("count null", "POST", "/generate", {"count": None}, J, 422, "count"),
    ("count query 10**100", "GET", "/generate?count=" + "9" * 100, None, {}, 422, "count"),
    ("count query 1e3", "GET", "/generate?count=1e3", None, {}, 422, "count"),
    ("seed -1", "POST", "/generate", {"seed": -1}, J, 422, "seed"),
    ("seed 2**63", "POST", "/generate", {"seed": 2 ** 63}, J, 422, "seed"),
    ("seed 2**64", "POST", "/generate", {"seed": 2 ** 64}, J, 422, "seed"),
    ("seed query 2**64", "GET", f"/generate?seed={2 ** 64}", None, {}, 422, "seed"),
    ("seed query -1", "GET", "/generate?seed=-1", None, {}, 422, "seed"),
    ("top_k 0", "POST", "/generate", {"top_k": 0}, J, 422, "top_k"),
    ("top_k above the vocabulary", "POST", "/generate", {"top_k": 28}, J, 422, "top_k"),
    ("max_length 0", "POST", "/generate", {"max_length": 0}, J, 422, "max_length"),
    ("max_length 65", "POST", "/generate", {"max_length": 65}, J, 422, "max_length"),
    ("max_length 10**100", "POST", "/generate", {"max_length": 10 ** 100}, J, 422, "max_length"),
    ("prefix digit", "POST", "/generate", {"prefix": "M4"}, J, 422, "prefix"),
    ("prefix dotted capital I (two characters in lower case)", "POST", "/generate", {"prefix": "\u0130"}, J, 422,
     "prefix"),
    ("suffix Kelvin sign (lower case 'k', but not 'K')", "POST", "/generate", {"suffix": "\u212a"}, J, 422, "suffix"),
    ("suffix digit", "POST", "/generate", {"suffix": "a1"}, J, 422, "suffix"),
    ("contains '.'", "GET", "/generate?contains=a.", None, {}, 422, "contains"),
    ("exclude too many", "POST", "/generate", {"exclude": ["a"] * 501}, J, 422, "exclude"),
    ("exclude a number", "POST", "/generate", {"exclude": [3]}, J, 422, "exclude.0"),
    ("case upper", "GET", "/generate?case=upper", None, {}, 422, "case"),
    ("min_length above max_length", "POST", "/generate", {"min_length": 9, "max_length": 8}, J, 422, "min_length"),
    ("prefix '.'", "POST", "/generate", {"prefix": "a.b"}, J, 422, "prefix"),
    ("prefix accented", "POST", "/generate", {"prefix": "zoé"}, J, 422, "prefix"),
    ("prefix emoji", "POST", "/generate", {"prefix": "\U0001F600"}, J, 422, "prefix"),
    ("prefix NUL", "POST", "/generate", {"prefix": "a\u0000"}, J, 422, "prefix"),
    ("prefix newline", "POST", "/generate", {"prefix": "a\nb"}, J, 422, "prefix"),
    ("prefix RTL override", "POST", "/generate", {"prefix": "\u202eab"}, J, 422, "prefix"),
    ("prefix lone surrogate", "POST", "/generate", b'{"prefix": "\\ud800"}', J, 422, "body"),
    ("prefix not shorter than max_length", "POST", "/generate", {"prefix": "anna", "max_length": 4}, J, 422, "prefix"),
    ("prefix query control character", "GET", "/generate?prefix=a%01", None, {}, 422, "prefix"),
    ("novel_only 'yes'", "POST", "/generate", {"novel_only": "yes"}, J, 422, "novel_only"),
    ("unknown field", "POST", "/generate", {"count": 1, "admin": True}, J, 422, "admin"),
    ("unknown query parameter", "GET", "/generate?cnt=5", None, {}, 422, "cnt"),
    ("body an array", "POST", "/generate", [1, 2], J, 422, "body"),
    ("body a string", "POST", "/generate", "count", J, 422, "body"),
    ("body null", "POST", "/generate", None, J, 422, "body"),
    ("truncated JSON", "POST", "/generate", b'{"count": ', J, 422, "body"),
    ("invalid UTF-8", "POST", "/generate", b'{"prefix": "\xff\xfe"}', J, 422, "body"),
    ("20,000-deep JSON", "POST", "/generate", b"[" * 20000 + b"]" * 20000, J, 422, "body"),
    ("20,000-deep JSON in a field", "POST", "/generate", b'{"count": ' + b"[" * 20000 + b"]" * 20000 + b"}", J, 422, None),
    ("oversized body", "POST", "/generate", {"prefix": "a" * 70000}, J, 413, "body"),
    ("Content-Length 10**12", "POST", "/generate", b"{}", {**J, "content-length-override": "1"}, 413, "body"),
    ("text/plain body", "POST", "/generate", {"count": 1}, {"content-type": "text/plain"}, 415, "content-type"),
    ("form body", "POST", "/generate", b"count=1", {"content-type": "application/x-www-form-urlencoded"}, 415,
     "content-type"),
    ("multipart body", "POST", "/score", b"--x\r\n\r\n--x--", {"content-type": "multipart/form-data; boundary=x"},
     415, "content-type"),
    ("score: truncated JSON", "POST", "/score", b'{"names": [', J, 422, "body"),
    ("score: no names", "POST", "/score", {"names": []}, J, 422, "names"),
    ("score: names missing", "POST", "/score", {}, J, 422, "names"),
    ("score: 1,001 names", "POST", "/score", {"names": ["ab"] * 1001}, J, 422, "names"),
    ("score: a 65-character name", "POST", "/score", {"names": ["a" * 65]}, J, 422, "names.0"),
    ("score: upper case", "POST", "/score", {"names": ["ann", "Bob"]}, J, 422, "names.1"),
    ("score: '.' in a name", "POST", "/score", {"names": ["a.b"]}, J, 422, "names.0"),
    ("score: control character", "POST", "/score", {"names": ["a\u0007"]}, J, 422, "names.0"),
    ("score: a number", "POST", "/score", {"names": [5]}, J, 422, "names.0"),
    ("score: names a string", "POST", "/score", {"names": "ann"}, J, 422, "names"),
    ("score: unknown field", "POST", "/score", {"names": ["ann"], "x": 1}, J, 422, "x"),
    ("score: per_char not a boolean", "POST", "/score", {"names": ["ann"], "per_char": "yes"}, J, 422, "per_char"),
    ("score: oversized body", "POST", "/score", {"names": ["a" * 60] * 1100}, J, 413, "body"),
    ("score: text/plain", "POST", "/score", {"names": ["ann"]}, {"content-type": "text/plain"}, 415, "content-type"),
    ("unknown route", "GET", "/admin", None, {}, 404, None),
    ("unknown method", "DELETE", "/generate", None, {}, 405, None),
    ("header too large", "GET", "/healthz", None, {"x-filler": "a" * 40000}, 431, None),
    ("repeated query parameter", "GET", "/generate?count=1000000&count=1", None, {}, 422, "count"),
    ("repeated query parameter, same value", "GET", "/generate?seed=1&seed=1", None, {}, 422, "seed"),
    ("score: invalid UTF-8", "POST", "/score", b'{"names": ["\xff"]}', J, 422, "body"),
    ("score: 20,000-deep JSON", "POST", "/score", b"[" * 20000 + b"]" * 20000, J, 422, "body"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from reliability_helpers import Server, copy_registry
    base = tmp_path_factory.mktemp("bad_input")
    server = Server(copy_registry(base / "models"), base / "server.log")
    yield server
    server.stop()


def length_of(data: bytes) -> int:
    """The Content-Length of a raw response head (0 until the head is complete)."""
    head = data.partition(b"\r\n\r\n")[0].lower()
    return int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]) if b"content-length: " in head else 0


def send(server, method, path, payload, headers):
    headers = dict(headers)
    if headers.pop("content-length-override", None):  # a body of 10**12 bytes by its header: raw socket
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {10 ** 12}\r\n\r\n".encode() + body(payload))
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < length_of(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return httpx.Response(int(head.split()[1]), content=rest)
    content = None if payload is None and method != "POST" else body(payload)
    with httpx.Client(timeout=30) as c:
        return c.request(method, f"{server.url}{path}", content=content, headers=headers)


def check(server, case, method, path, payload, headers, status, field):
    r = send(server, method, path, payload, headers)
    assert r.status_code == status, (case, r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail and all("message" in d for d in detail)
    if field is not None:
        assert field in {d["field"] for d in detail}, (case, detail)


@pytest.mark.parametrize("case,method,path,payload,headers,status,field", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_4xx(server, case, method, path, payload, headers, status, field):
    check(server, case, method, path, payload, headers, status, field)


def test_server_is_healthy_after_the_catalogue_and_answered_no_5xx(server, figure):
    assert server.healthy()
    statuses = wait_until(lambda: server.statuses() if len(server.statuses()) >= len(CASES) else None)
    assert [s for s in statuses if s >= 500] == []
    figure("bad input: catalogue cases / 5xx", f"{len(CASES)} / 0")
