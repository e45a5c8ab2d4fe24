"""Text log lines cannot be forged from a request; JSON lines keep the values as they came."""
import asyncio
import contextlib
import io
import json
import logging
import re

from service.logs import AccessLog, JsonFormatter, LineHandler, TextFormatter, get_logger

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


def access_pair(log_format, now, **fields):
    """The direct access line and the formatter's line for the same record, both at `now`."""
    handler = LineHandler(io.StringIO())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    direct = AccessLog(handler, log_format, get_logger("access"))
    rec = record(fields={k: v for k, v in fields.items() if v is not None or k != "token"})
    rec.created, rec.msecs = now, (now - int(now)) * 1000
    return direct.line(now, **fields), handler.format(rec)


ACCESS_CASES = [
    dict(request_id="0af3-12", method="GET", path="/healthz", status=200, duration_ms=0.123, token=None),
    dict(request_id=FORGED_ID, method="GET", path=FORGED_PATH, status=404, duration_ms=12.0, token="ci"),
    dict(request_id="\u2028x", method="HEAD", path='/h"ealthz status=500\x1b[2J', status=503,
         duration_ms=1234.567, token="a b=c"),
]


def test_the_direct_access_line_is_the_text_formatters_line():
    for i, fields in enumerate(ACCESS_CASES):
        direct, formatted = access_pair("text", 1764950400.25 + i * 3601.5, **fields)
        assert direct == formatted
        assert "\n" not in direct


def test_the_direct_access_line_is_the_json_formatters_line():
    for i, fields in enumerate(ACCESS_CASES):
        direct, formatted = access_pair("json", 1764950400.999 + i * 59.001, **fields)
        assert direct == formatted
        assert json.loads(direct)["path"] == fields["path"]


@contextlib.contextmanager
def access_level(level):
    logger = logging.getLogger("namegen.access")
    old = logger.level
    logger.setLevel(level)  # setLevel, not the attribute: it clears the loggers' cached answers
    try:
        yield
    finally:
        logger.setLevel(old)


def direct_writer(stream):
    handler = LineHandler(stream)
    handler.setFormatter(TextFormatter())
    return handler, AccessLog(handler, "text", get_logger("access"))


def test_access_lines_are_written_in_order_before_a_later_record():
    stream = io.StringIO()
    handler, direct = direct_writer(stream)
    with access_level(logging.INFO):
        for n in range(3):  # no event loop here: each line is written at once
            direct.write(f"id{n}", "GET", "/healthz", 200, 0.5, None)
    handler.add(direct.line(0.0, "queued", "GET", "/x", 200, 0.5, None))
    handler.emit(record("later"))
    lines = stream.getvalue().splitlines()
    assert [k_v(line).get("request_id") for line in lines] == ["id0", "id1", "id2", "queued", None]
    assert lines[-1].endswith(" INFO namegen.access later")


class CountedWrites(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, s):
        self.writes += 1
        return super().write(s)


def test_access_lines_of_one_event_loop_pass_are_written_together_at_its_end():

    stream = CountedWrites()
    handler, direct = direct_writer(stream)

    async def requests():
        for n in range(5):
            direct.write(f"id{n}", "GET", "/healthz", 200, 0.5, None)
        waiting = stream.getvalue()
        await asyncio.sleep(0)  # the pass ends
        return waiting

    with access_level(logging.INFO):
        assert asyncio.run(requests()) == ""
    assert [k_v(line)["request_id"] for line in stream.getvalue().splitlines()] == [f"id{n}" for n in range(5)]
    assert stream.writes == 1


def test_the_access_log_stays_quiet_below_its_level():
    stream = io.StringIO()
    _, direct = direct_writer(stream)
    with access_level(logging.WARNING):
        direct.write("id", "GET", "/healthz", 200, 0.5, None)
    assert stream.getvalue() == ""
