"""The HTTP edge: what every request passes before and after the routes, as plain ASGI.

FastAPI keeps the schema, the validation and /docs, but its own per-request path (error middleware,
routing, the endpoint wrapper, the response serializer) costs several times what a small request's
work does. So `EdgeApp.build_middleware_stack` puts in front of it, once per app:

- `Edge` (outermost): request id, the refusals that need no route (protocol-level ones, no Host,
  a body that is not JSON or too large), HEAD as GET without a body, the headers every answer
  carries (nosniff, the CSP, Retry-After on every 503), metrics by route template and the access log;
- then the middleware listed by `service.api.app.middleware` (outermost first);
- then `HotRoutes`: a table from (method, path) to the routes whose endpoint takes nothing but the
  Request, called directly with the app's own exception handlers; anything else (path parameters,
  FastAPI parameters or dependencies, unknown paths, other methods) falls through to FastAPI.
"""
from __future__ import annotations

import inspect
import itertools
import os
import re
import time
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import ResponseValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from service.api import answers
from service.api.auth import CLIENT
from service.api.protocol import REFUSAL
from service.logs import log_access
from service.ops.metrics import Metrics

REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@+\-]{1,128}\Z")  # a client's X-Request-ID is kept only if plain
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self' data:; worker-src 'self' blob:; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
COMMON_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", CSP.encode())]
# ReDoc draws with styled-components, which inserts <style> elements: its page alone allows inline
# styles (they run no code; scripts stay 'self' there too).
REDOC_HEADERS = [(b"x-content-type-options", b"nosniff"),
                 (b"content-security-policy", CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'").encode())]
RETRY_AFTER = (b"retry-after", b"1")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
UNMATCHED = "unmatched"


class BodyTooLarge(HTTPException):
    """A body that passed the limit while it was read (chunked, or longer than announced)."""

    field = "body"

    def __init__(self, limit: int):  # the rest of the body is not read: the connection cannot go on
        super().__init__(413, f"request body larger than {limit} bytes", headers={"Connection": "close"})


def is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class EdgeApp(FastAPI):
    """FastAPI whose middleware stack is built by `compose` (the edge, the listed middleware, the hot routes)."""

    edge_middleware: list[tuple[type, dict[str, Any]]] = []

    def build_middleware_stack(self):
        return compose(self, super().build_middleware_stack())

    async def __call__(self, scope, receive, send):
        """Straight into the stack for HTTP, as Starlette does: FastAPI's own __call__ asks on every
        request whether its OpenTelemetry hook is configured (the service exports Prometheus metrics)."""
        if scope["type"] != "http" or self.root_path:
            return await super().__call__(scope, receive, send)
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)


def compose(app: FastAPI, fastapi_stack) -> Callable:
    """The one place the chain is built: Edge -> app.edge_middleware (outermost first) -> HotRoutes -> FastAPI."""
    inner = HotRoutes(app, fastapi_stack)
    for cls, options in reversed(app.edge_middleware):
        inner = cls(inner, **options)
    return Edge(inner, app, app.state.metrics, app.state.settings.max_body_bytes)


def flat_routes(app: FastAPI) -> list:
    """The app's routes in matching order, each included router's routes with their effective paths."""
    try:  # FastAPI keeps included routers lazily; this is how it lists their effective routes
        from fastapi.routing import _iter_included_route_candidates
    except ImportError:  # a FastAPI that lists them flat
        return list(app.router.routes)
    return list(_iter_included_route_candidates(app.router.routes))


def hot_route(route: Any) -> bool:
    """Can this route be called without FastAPI's machinery and answer the same? Only an async endpoint
    of a fixed path that takes nothing but the Request, has no dependencies, and returns a Response or
    plain JSON data under the default status and response class."""
    if not isinstance(route, APIRoute) or route.param_convertors or route.status_code is not None:
        return False
    d = route.dependant
    if d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params or d.dependencies:
        return False
    if not isinstance(route.response_class, DefaultPlaceholder) or route.response_class.value is not JSONResponse:
        return False
    if (route.response_model_include, route.response_model_exclude, route.response_model_by_alias,
            route.response_model_exclude_unset, route.response_model_exclude_defaults,
            route.response_model_exclude_none) != (None, None, True, False, False, False):
        return False
    if not inspect.iscoroutinefunction(route.endpoint):
        return False
    params = list(inspect.signature(route.endpoint).parameters)
    return params == [] or params == [d.request_param_name]


def serialized(route: APIRoute, result: Any) -> Response:
    """What FastAPI answers for an endpoint's plain result: validated and dumped by its response field
    (pydantic's JSON, whose numbers differ from json.dumps'), or jsonable_encoder's JSON without one."""
    field = route.response_field
    if field is None:
        return JSONResponse(jsonable_encoder(result))
    value, errors = field.validate(result, {}, loc=("response",))
    if errors:
        raise ResponseValidationError(errors=errors, body=result)
    return Response(field.serialize_json(value), media_type="application/json")


class HotRoutes:
    """Calls the hot routes' endpoints directly; everything else goes to FastAPI. The tables are built at
    the first request (the app's routes are all added by then) and never change.

    Two kinds: FastAPI routes that `hot_route` accepts, by (method, path); and the plain Starlette
    routes (an async endpoint taking the Request) placed before every other route: the first of them
    that matches a request fully is the route FastAPI's router would pick, as it takes the first full
    match in order."""

    def __init__(self, app: FastAPI, fallback):
        self.app = app
        self.fallback = fallback
        self.table: dict[tuple[str, str], APIRoute] | None = None
        self.plain: list[Route] = []
        self.plain_prefix = ""  # what every plain route's path starts with: other paths skip them

    def build(self) -> dict[tuple[str, str], APIRoute]:
        table: dict[tuple[str, str], APIRoute] = {}
        claimed: set[str] = set()
        for route in flat_routes(self.app):
            path = getattr(route, "path", None)
            if path is None or path in claimed:
                continue  # the first route for a path wins in FastAPI's routing; keep that order
            if hot_route(route):
                for method in route.methods:
                    table.setdefault((method, path), route)
            else:
                claimed.add(path)  # a later hot route must not shadow an earlier route's path
        self.plain = list(itertools.takewhile(
            lambda r: type(r) is Route and inspect.iscoroutinefunction(r.endpoint), self.app.router.routes))
        self.plain_prefix = os.path.commonprefix([r.path.split("{", 1)[0] for r in self.plain])
        return table

    async def __call__(self, scope, receive, send):
        table = self.table
        if table is None:
            table = self.table = self.build()
        if scope["type"] != "http":
            return await self.fallback(scope, receive, send)
        route = table.get((scope.get("method"), scope.get("path")))
        if route is not None:
            scope["route"] = route
            scope["endpoint"] = route.endpoint
            scope["path_params"] = {}
            return await self.answer(scope, receive, send, route.endpoint, route)
        if self.plain and scope["path"].startswith(self.plain_prefix):
            for plain in self.plain:
                match, child = plain.matches(scope)
                if match is Match.FULL:
                    scope.update(child)  # endpoint, path_params: what the router sets
                    scope["route"] = plain  # the metrics' route template
                    return await self.answer(scope, receive, send, plain.endpoint, None)
        return await self.fallback(scope, receive, send)

    async def answer(self, scope, receive, send, endpoint, route: APIRoute | None) -> None:
        """The endpoint's answer, or the app's exception handler's for what it raised (route: a FastAPI
        route, whose plain results are serialized as FastAPI would). The Request is made only for an
        endpoint that takes one, or for a handler."""
        request = None
        started = False

        async def tracked(message):
            nonlocal started
            started = True
            await send(message)

        try:
            if route is None or route.dependant.request_param_name:
                request = Request(scope, receive, send)
                result = await endpoint(request)
            else:
                result = await endpoint()
            response = result if isinstance(result, Response) else serialized(route, result)
            await response(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            handler = self.handler(exc)
            if handler is None:
                raise
            response = await handler(request or Request(scope, receive, send), exc)
            await response(scope, receive, send)

    def handler(self, exc: Exception):
        handlers = self.app.exception_handlers
        if isinstance(exc, HTTPException) and exc.status_code in handlers:
            return handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None


class Edge:
    """Request id, refusals before any route, HEAD, the common headers, metrics and one log line."""

    def __init__(self, app, fastapi: FastAPI, metrics: Metrics, max_body: int):
        self.app = app
        self.fastapi = fastapi
        self.metrics = metrics
        self.max_body = max_body
        self.prefix = os.urandom(8).hex()  # generated ids: a random per-process prefix and a counter
        self.counter = itertools.count()
        self.routes: list | None = None  # flat_routes, at the first refusal

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        request_id = length = host = None
        content_type, chunked = b"", False
        for k, v in scope["headers"]:
            if k == b"host":
                host = v
            elif k == b"x-request-id":
                request_id = v.decode("latin-1") if REQUEST_ID.match(v) else None  # else one of ours
            elif k == b"content-length":
                length = v
            elif k == b"content-type":
                content_type = v
            elif k == b"transfer-encoding":
                chunked = True
        request_id = request_id or f"{self.prefix}{next(self.counter):08x}"
        headers = [*(REDOC_HEADERS if scope["path"] == "/redoc" else COMMON_HEADERS),
                   (b"x-request-id", request_id.encode("latin-1"))]
        method = scope["method"]
        head = method == "HEAD"
        inner = {**scope, "method": "GET"} if head else scope  # uvicorn's own scope keeps HEAD: it sends no body
        status = 500

        async def send_with_headers(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = headers
                if status == 503 and not any(k.lower() == b"retry-after" for k, _ in message.get("headers", ())):
                    extra = [*headers, RETRY_AFTER]
                message["headers"] = [*message.get("headers", ()), *extra]
            elif head and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        received = 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        try:
            refusal = self.refusal(scope, host, length, content_type, chunked)
            if refusal is not None:
                code, message, field = refusal
                response = JSONResponse(answers.error(message, field), status_code=code,
                                        headers={"Connection": "close"} if code in (400, 431, 503) else None)
                if code == 503:
                    self.metrics.busy.inc()
                await response(scope, receive, send_with_headers)
            else:
                await self.app(inner, receive_limited, send_with_headers)
        finally:
            seconds = time.perf_counter() - start
            route = inner.get("route")
            self.metrics.observe(route.path if route is not None else self.template(inner), method, status, seconds)
            log_access(request_id, method, scope["path"], status, round(seconds * 1000, 3), inner.get(CLIENT))

    def refusal(self, scope, host, length, content_type: bytes, chunked: bool) -> tuple[int, str, str | None] | None:
        """(status, message, field) for a request answered before any route, else None."""
        protocol = scope.get(REFUSAL)  # set by service.api.protocol: headers too large, too many connections
        if protocol:
            return (*protocol, None)
        if host is None and scope.get("http_version") != "1.0":
            return 400, "a Host header is required (HTTP/1.1)", "host"
        has_body = chunked or (length is not None and length.strip() not in (b"", b"0"))
        if (has_body and scope["method"] in BODY_METHODS and not is_json(content_type)
                and not scope["path"].startswith("/v2/")):  # the inference protocol's clients send no type
            return 415, "a request body must be JSON (content-type: application/json)", "content-type"
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, f"request body larger than {self.max_body} bytes", "body"
        return None

    def template(self, scope) -> str:
        """The route template of a request no route ran for (refused at the edge, 405): the path of the
        first route whose pattern matches it, so clients cannot mint label values."""
        if self.routes is None:
            self.routes = flat_routes(self.fastapi)
        for route in self.routes:
            if route.matches(scope)[0] is not Match.NONE:
                return getattr(route, "path", UNMATCHED)
        return UNMATCHED
