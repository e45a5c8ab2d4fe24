"""The app factory: settings in, FastAPI app out. The model is loaded in the lifespan, never at import."""
from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import contextlib
import gc
import signal
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from service.api import answers, oip, openapi
from service.logs import get_logger, setup_logging
from service.ops.metrics import Metrics
from service.ops.memory import map_large_blocks
from service.api.protocol import REFUSAL
from service.ops.pool import ModelPool
from service.ops.reload import ModelState
from service.api.gate import Gate
from service.api.routes import router
from service.core.scheduler import Scheduler
from service.settings import Settings, get_settings
from service.web import pages as web

log = get_logger("app")
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@+\-]{1,128}\Z")  # a client's X-Request-ID is kept only if plain
access = get_logger("access")

DESCRIPTION = """Names sampled from makemore part 3's BatchNorm MLP, served from its ONNX artifact.
See docs/service.md for the semantics of every parameter."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="namegen", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.model = ModelState()  # the default model's: what requests without `model` read
    app.state.pool = ModelPool(settings, app.state.metrics, app.state.model)
    app.state.gate = Gate(settings.max_in_flight * max(settings.max_count, settings.max_score_names))
    app.state.seeds = random.Random(os.urandom(16))  # seeds for requests without one (not secrets)
    app.include_router(router)
    oip.install(app)
    web.install(app)  # the pages for people (/, /model/card) and their headers
    openapi.install(app)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, server_error)
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics, max_body=settings.max_body_bytes)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for several workers: every worker reads the environment itself."""
    settings = get_settings()
    setup_logging(settings.log_format, settings.log_level)
    return create_app(settings)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    map_large_blocks(settings.mmap_threshold)  # before the model's tables: see service/ops/memory.py
    app.state.scheduler = Scheduler()
    app.state.scheduler.start()
    pool: ModelPool = app.state.pool
    await pool.start()  # the default model's first attempt (a failure leaves /readyz at 503); others load after
    gc.freeze()  # what startup built lives on: keep it out of the collector's full passes (tail latency)
    loop = asyncio.get_running_loop()
    hup = False
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, pool.request)  # main thread of a real server only
        hup = True
    try:
        yield
    finally:
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        await pool.close()
        await app.state.scheduler.close()


# ---- errors: always {"detail": [{"field", "message", ...}]} ---------------------------------------

async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(answers.invalid(exc.errors()), status_code=422)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    headers = exc.headers
    if exc.status_code == 405:  # Starlette's Allow names the methods of one route; a path can have several
        methods = allowed_methods(request)
        if methods:
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
    return JSONResponse(answers.error(str(exc.detail), getattr(exc, "field", None)), status_code=exc.status_code,
                        headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method the API document gives this request's path (and HEAD with GET, as served)."""
    methods = {m.upper() for m in request.app.openapi()["paths"].get(request.url.path, {})}
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(answers.error("internal error"), status_code=500)


async def client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
    """The client left (or service.api.protocol closed it for a slow body) before its body arrived: no one
    reads this answer, but the access log and metrics record a 408 rather than an internal error."""
    return JSONResponse(answers.error("the client disconnected", "body"), status_code=408)


def is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


# ---- per request: id, body limit, metrics, one log line (plain ASGI: cheaper than BaseHTTPMiddleware)

class RequestMiddleware:
    def __init__(self, app, metrics: Metrics, max_body: int):
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.prefix = os.urandom(8).hex()  # generated ids: a random per-process prefix and a counter
        self.counter = itertools.count()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        request_id = length = None
        content_type, chunked = b"", False
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                request_id = v.decode("latin-1") if REQUEST_ID.match(v) else None  # else one of ours
            elif k == b"content-length":
                length = v
            elif k == b"content-type":
                content_type = v
            elif k == b"transfer-encoding":
                chunked = True
        has_body = chunked or (length is not None and length.strip() not in (b"", b"0"))
        request_id = request_id or f"{self.prefix}{next(self.counter):08x}"
        rid_header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        received = 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise HTTPException(413, f"request body larger than {self.max_body} bytes")
            return message

        try:
            refusal = scope.get(REFUSAL)  # set by service.api.protocol: headers too large, too many connections
            if refusal:
                code, message = refusal
                headers = {"Connection": "close", **({"Retry-After": "1"} if code == 503 else {})}
                if code == 503:
                    self.metrics.busy.inc()
                response = JSONResponse(answers.error(message), status_code=code, headers=headers)
                await response(scope, receive, send_with_id)
            elif (has_body and scope["method"] in ("POST", "PUT", "PATCH") and not is_json(content_type)
                  and not scope["path"].startswith("/v2/")):  # the inference protocol's clients send no type
                response = JSONResponse(answers.error("a request body must be JSON (content-type: application/json)",
                                                      "content-type"), status_code=415)
                await response(scope, receive, send_with_id)
            elif length is not None and length.isdigit() and int(length) > self.max_body:
                response = JSONResponse(answers.error(f"request body larger than {self.max_body} bytes", "body"),
                                        status_code=413)
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_limited, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.observe(path, scope["method"], status, seconds)
            access.info("request", extra={"fields": {"request_id": request_id, "method": scope["method"],
                                          "path": scope["path"], "status": status,
                                          "duration_ms": round(seconds * 1000, 3)}})
