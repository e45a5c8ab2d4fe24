"""Logging setup: plain text or one JSON object per line (NAMEGEN_LOG_FORMAT=json).
Extra fields passed as `extra={"fields": {...}}` appear as keys in JSON and as k=v in text.

Text lines must not be forgeable from a request: a path, query or header can hold a newline, a space
or `key=value`. So in text, a field value that is not plainly safe is written as a JSON string
(quoted, every control and non-ASCII character escaped), the message has its non-printable
characters escaped, and a traceback's lines are indented: every line that starts in column 0 is a
record the service wrote. JSON lines need none of this (json.dumps escapes)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import threading
import time
from json.encoder import encode_basestring_ascii as json_string

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


class LineHandler(logging.StreamHandler):
    """The stream handler of setup_logging: it also holds the access lines not yet written, and writes
    them before any other record, so the stream keeps the order in which records were made."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        self.pending_lock = threading.Lock()  # records come from the event loop and from worker threads

    def add(self, line: str) -> int:
        """Queue one finished line; how many wait now."""
        with self.pending_lock:
            self.pending.append(line)
            return len(self.pending)

    def write_pending(self) -> None:
        with self.pending_lock:
            lines, self.pending = self.pending, []
        if lines:
            with self.lock:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # a closed stream must not break a request or shutdown
                    pass

    def emit(self, record: logging.LogRecord) -> None:
        self.write_pending()
        super().emit(record)

    def flush(self) -> None:  # logging.shutdown calls it at exit
        self.write_pending()
        super().flush()


class AccessLog:
    """The access log's one line per request, made without a LogRecord: the same line the formatters
    make from `access.info("request", extra={"fields": ...})` (tests compare the two), from parts
    computed once, the timestamp once a second. The lines of one pass of the event loop (the requests
    it answered together) are written in one write at the end of that pass, before any other record
    and at exit: under load one write serves several requests, and a line is never later than the
    pass that answered its request."""

    BATCH = 512  # lines written at once, whatever else (a pass that answers very many requests)

    def __init__(self, handler: LineHandler, log_format: str, logger: logging.Logger):
        self.handler = handler
        self.json = log_format == "json"
        self.logger = logger
        self.second = -1
        self.stamp = ""
        if self.json:
            self.head = (f'", "level": "info", "logger": {json_string(logger.name)}, "pid": {os.getpid()}, '
                         '"msg": "request", "request_id": ')
        else:
            self.head = f" INFO {logger.name} request request_id="

    def timestamp(self, now: float) -> str:
        """The record's time as the chosen formatter writes it (text: local, comma; JSON: UTC, Z)."""
        second = int(now)
        if second != self.second:
            self.second = second
            self.stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) if self.json
                          else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
        ms = int((now - second) * 1000)
        return f"{self.stamp}.{ms:03d}Z" if self.json else f"{self.stamp},{ms:03d}"

    def line(self, now: float, request_id: str, method: str, path: str, status: int, duration_ms: float,
             token: str | None) -> str:
        if self.json:
            out = (f'{{"ts": "{self.timestamp(now)}{self.head}{json_string(request_id)}, "method": '
                   f'{json_string(method)}, "path": {json_string(path)}, "status": {status}, '
                   f'"duration_ms": {duration_ms!r}')
            return out + (f', "token": {json_string(token)}}}' if token is not None else "}")
        out = (f"{self.timestamp(now)}{self.head}{text_value(request_id)} method={text_value(method)} "
               f"path={text_value(path)} status={status} duration_ms={duration_ms!r}")
        return out + (f" token={text_value(token)}" if token is not None else "")

    def write(self, request_id: str, method: str, path: str, status: int, duration_ms: float,
              token: str | None) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        waiting = self.handler.add(self.line(time.time(), request_id, method, path, status, duration_ms, token))
        if waiting == 1:
            try:
                asyncio.get_running_loop().call_soon(self.handler.write_pending)
                return
            except RuntimeError:  # no event loop in this thread: write now
                pass
        if waiting == 1 or waiting >= self.BATCH:
            self.handler.write_pending()


_access: AccessLog | None = None  # set by setup_logging; without it the access log goes through logging


def log_access(request_id: str, method: str, path: str, status: int, duration_ms: float,
               token: str | None = None) -> None:
    """One access line: the direct writer when setup_logging made one, else a plain log record (tests
    and embedders that route logging themselves see the same fields)."""
    if _access is not None:
        _access.write(request_id, method, path, status, duration_ms, token)
        return
    fields = {"request_id": request_id, "method": method, "path": path, "status": status,
              "duration_ms": duration_ms}
    if token is not None:
        fields["token"] = token
    get_logger("access").info("request", extra={"fields": fields})


def setup_logging(log_format: str = "text", level: str = "info") -> None:
    """Route the service's and uvicorn's loggers to stderr in the chosen format."""
    global _access
    # The formats use neither the caller's file and line nor thread names: logging need not look them up
    # for each record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = LineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    _access = AccessLog(handler, log_format, get_logger("access"))


def get_logger(part: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{part}")
