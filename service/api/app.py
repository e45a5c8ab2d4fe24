"""The app factory: settings in, FastAPI app out. The model is loaded in the lifespan, never at import."""
from __future__ import annotations

import asyncio
import os
import random
import contextlib
import gc
import signal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from service.api import answers, auth, oip, openapi
from service.logs import get_logger, setup_logging
from service.ops.metrics import Metrics
from service.ops.memory import map_large_blocks
from service.api.edge import EdgeApp
from service.ops.pool import ModelPool
from service.ops.reload import ModelState
from service.api.gate import Gate
from service.api.routes import router
from service.core.scheduler import Scheduler
from service.settings import Settings, get_settings
from service.web import docs, pages as web

log = get_logger("app")

YOUNG_GENERATION = 20_000  # allocations between the garbage collector's young passes (Python's default: 700)

DESCRIPTION = """Names sampled from makemore part 3's BatchNorm MLP, served from its ONNX artifact.
See docs/service.md for the semantics of every parameter."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = EdgeApp(title="namegen", version="1", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # the package's own copies: service/web/docs.py
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.model = ModelState()  # the default model's: what requests without `model` read
    app.state.pool = ModelPool(settings, app.state.metrics, app.state.model)
    app.state.gate = Gate(settings.max_in_flight * max(settings.max_count, settings.max_score_names))
    app.state.seeds = random.Random(os.urandom(16))  # seeds for requests without one (not secrets)
    app.state.access = auth.access_from(settings)  # tokens and rates per client (None each when off)
    app.include_router(router)
    oip.install(app)
    web.install(app)  # the pages for people (/, /model/card)
    openapi.install(app)
    docs.install(app)  # /docs and /redoc from the package's files
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, server_error)
    app.edge_middleware = middleware(app, settings)
    return app


def middleware(app: FastAPI, settings: Settings) -> list[tuple[type, dict]]:
    """The middleware between the edge (request id, refusals, headers, metrics, log) and the routes,
    outermost first: plain ASGI classes, each built as cls(next_app, **options). Hot routes run after
    them too (see service/api/edge.py)."""
    access = app.state.access
    if access.store or access.limiter:
        return [(auth.AuthMiddleware, {"access": access})]
    return []


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
    # A request makes and drops a few hundred container objects, nearly all freed by their reference
    # counts: at the default threshold (700) the collector's young pass runs every few requests and
    # finds almost nothing; a larger young generation runs it far less often for the same garbage.
    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])
    loop = asyncio.get_running_loop()
    hup = False
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, lambda: on_hup(app))  # main thread of a real server only
        hup = True
    try:
        yield
    finally:
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        await pool.close()
        await app.state.scheduler.close()


def on_hup(app: FastAPI) -> None:
    """SIGHUP: look at the registry and the token file now."""
    app.state.pool.request()
    if app.state.access.store is not None:
        app.state.access.store.reload()


# ---- errors: always {"detail": [{"field", "message", ...}]} ---------------------------------------

async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(answers.invalid(exc.errors()), status_code=422)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    headers = exc.headers
    if exc.status_code == 405:  # Starlette's Allow names the methods of one route; a path can have several
        methods = allowed_methods(request)
        if methods:
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
    field = getattr(exc, "field", None)
    return JSONResponse(answers.error(str(exc.detail), field), status_code=exc.status_code, headers=headers)


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
