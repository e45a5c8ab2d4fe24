"""Logging setup: plain text or one JSON object per line (NAMEGEN_LOG_FORMAT=json).
Extra fields passed as `extra={"fields": {...}}` appear as keys in JSON and as k=v in text.

Text lines must not be forgeable from a request: a path, query or header can hold a newline, a space
or `key=value`. So in text, a field value that is not plainly safe is written as a JSON string
(quoted, every control and non-ASCII character escaped), the message has its non-printable
characters escaped, and a traceback's lines are indented: every line that starts in column 0 is a
record the service wrote. JSON lines need none of this (json.dumps escapes)."""
from __future__ import annotations

import json
import logging
import re
import sys
import time

LOGGER = "namegen"

_PLAIN = re.compile(r"[A-Za-z0-9_.,:/@+\-]+\Z")  # written as is; anything else is quoted


def text_value(value: object) -> str:
    """One k=v value for a text line: plain when safe, else a JSON string."""
    if value is None or isinstance(value, (bool, int, float)):
        return str(value)
    s = str(value)
    return s if _PLAIN.match(s) else json.dumps(s)


def printable(s: str) -> str:
    """s with every non-printable character (newlines, other controls, line separators) escaped."""
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker, with several
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return "\n".join("    " + line for line in super().formatException(ei).splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("    " + line for line in stack_info.splitlines())

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            head, sep, tail = line.partition("\n")  # fields belong to the record's first line
            head += " " + " ".join(f"{k}={text_value(v)}" for k, v in fields.items())
            line = head + sep + tail
        return line


def setup_logging(log_format: str = "text", level: str = "info") -> None:
    """Route the service's and uvicorn's loggers to stderr in the chosen format."""
    # The formats use neither the caller's file and line nor thread names: logging need not look them up
    # for each record (the access log writes one per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def get_logger(part: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{part}")
