"""Text log lines cannot be forged from a request; JSON lines keep the values as they came."""
import json
import logging
import re

from service.logs import JsonFormatter, TextFormatter

FORGED_PATH = "/healthz\n2026-11-25 17:00:00,000 INFO namegen.access request request_id=FORGED"
FORGED_ID = "abc method=POST path=/admin status=200"
LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def record(msg="request", fields=None, exc_info=None, args=()):
    r = logging.LogRecord("namegen.access", logging.INFO, __file__, 1, msg, args, exc_info)
    if fields is not None:
        r.fields = fields
    return r


def k_v(line):
    """The k=v pairs of a text line, reading quoted values as JSON strings."""
    pairs = re.findall(r' (\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)
    return {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}


def test_text_log_keeps_a_forged_access_line_inside_one_quoted_value():
    fields = {"request_id": FORGED_ID, "method": "GET", "path": FORGED_PATH, "status": 200, "duration_ms": 0.5}
    line = TextFormatter().format(record(fields=fields))
    assert "\n" not in line
    pairs = k_v(line)
    assert pairs["request_id"] == FORGED_ID  # one value, read back exactly
    assert pairs["path"] == FORGED_PATH
    assert (pairs["method"], pairs["status"]) == ("GET", "200")  # the forged method=POST did not take over
    assert list(pairs) == ["request_id", "method", "path", "status", "duration_ms"]


def test_text_log_escapes_controls_and_separators_in_the_message():
    line = TextFormatter().format(record("unhandled error on %s %s", args=("GET", "/a\r\nB\u2028C\x1b[31m")))
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x1b" not in line
    assert line.endswith(r"/a\r\nB\u2028C\x1b[31m")


def test_text_log_indents_tracebacks_so_only_records_start_a_line():
    try:
        raise ValueError("bad\n2026-11-25 17:00:00,000 INFO namegen.access forged")
    except ValueError:
        import sys
        exc = sys.exc_info()
    text = TextFormatter().format(record("boom", fields={"path": "/x"}, exc_info=exc))
    lines = text.splitlines()
    assert LINE_START.match(lines[0]) and lines[0].endswith("path=/x")
    assert len(lines) > 2 and all(line.startswith("    ") for line in lines[1:])


def test_text_log_writes_plain_values_unquoted():
    line = TextFormatter().format(record(fields={"path": "/generate", "request_id": "0af3-12", "status": 422}))
    assert line.endswith(" path=/generate request_id=0af3-12 status=422")


def test_json_log_keeps_request_values_as_they_came():
    out = json.loads(JsonFormatter().format(record(fields={"path": FORGED_PATH, "request_id": FORGED_ID})))
    assert (out["path"], out["request_id"]) == (FORGED_PATH, FORGED_ID)
