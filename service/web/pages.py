"""Pages for people: the playground at `/` (calls /generate from the browser) and the served
version's model card at `/model/card`, with the static files both need and the headers a page needs.

Everything ships inside the package (service/web/static/); nothing is fetched from elsewhere. The
playground's limits and defaults come from GenerateRequest and the settings, filled into the page
when it is served, so they are written down once. Pages read the engine reference once per request,
so after a hot reload they show the new version.
"""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from html import escape
from importlib import resources
from string import Template
from weakref import WeakKeyDictionary

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from service.api.schemas import GenerateRequest
from service.core import offline
from service.core.constraints import MAX_EXCLUDE, Constraints
from service.core.engine import Engine
from service.web.card import render_card
from service.web.files import Catalogs

router = APIRouter(include_in_schema=False)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
STATIC_CACHE = "public, max-age=3600"  # the package's files: change only with a new install
REPORT_CACHE = "public, max-age=31536000, immutable"  # a version's files never change once published
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class StaticFile:
    data: bytes
    media_type: str
    etag: str


def _load_static() -> tuple[dict[str, StaticFile], dict[str, Template]]:
    """Read the package's static files and page templates once, at import."""
    files, templates = {}, {}
    for entry in resources.files("service.web").joinpath("static").iterdir():
        if entry.name.endswith(".html"):
            templates[entry.name] = Template(entry.read_text(encoding="utf-8"))
        elif (suffix := entry.name[entry.name.rfind("."):]) in STATIC_TYPES:
            data = entry.read_bytes()
            files[entry.name] = StaticFile(data, STATIC_TYPES[suffix], f'"{hashlib.sha256(data).hexdigest()[:16]}"')
    return files, templates


STATIC, TEMPLATES = _load_static()
CATALOGS = Catalogs()
EXAMPLE_SEED = 20261205  # the playground's first names and the card's examples: the same every visit
EXAMPLE_COUNT = 8  # names on the card
EXAMPLES: WeakKeyDictionary[Engine, list[str]] = WeakKeyDictionary()  # an engine's examples live while it does


def install(app: FastAPI) -> None:
    """Add the pages and the headers to an app (called by service.api.app.create_app)."""
    app.include_router(router)
    app.add_middleware(PageHeaders, skip=frozenset(p for p in (app.docs_url, app.redoc_url,
                                                               app.swagger_ui_oauth2_redirect_url) if p))


class PageHeaders:
    """nosniff on every response; the Content-Security-Policy on all but FastAPI's own docs pages
    (Swagger UI needs inline script). Plain ASGI, like the app's other middleware."""

    def __init__(self, app, skip: frozenset[str]):
        self.app = app
        self.skip = skip

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = [(b"x-content-type-options", b"nosniff")]
        if scope["path"] not in self.skip:
            extra.append((b"content-security-policy", CSP.encode()))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = TEMPLATES["page.html"].substitute(title=escape(title), body=body)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-cache"})


def _bounds(field: str) -> dict[str, object]:
    """min/max (inclusive where the schema is) and the default of a GenerateRequest field."""
    out: dict[str, object] = {}
    for c in GenerateRequest.model_fields[field].metadata:
        for attr, key in (("ge", "min"), ("gt", "min"), ("le", "max"), ("lt", "max")):
            if getattr(c, attr, None) is not None:
                value = getattr(c, attr)
                out[key] = value - 1 if (attr == "lt" and isinstance(value, int)) else value
    out["default"] = GenerateRequest.model_fields[field].default
    return out


@router.get("/")
async def playground(request: Request) -> HTMLResponse:
    state = request.app.state
    settings, engine = state.settings, state.model.engine
    manifest = engine.model.manifest if engine else None
    served = (f'serving <a href="/model/card">{escape(manifest.name)} {escape(manifest.version)}</a>'
              if manifest else "no model loaded yet")
    count, temperature, top_k, max_length = (_bounds(f) for f in ("count", "temperature", "top_k", "max_length"))
    body = TEMPLATES["playground.html"].substitute(
        served=served, example_seed=EXAMPLE_SEED, exclude_max=MAX_EXCLUDE,
        count_min=count["min"], count_max=settings.max_count,
        seed_max=_bounds("seed")["max"],
        temperature_min=temperature["min"], temperature_max=temperature["max"],
        temperature_default=temperature["default"],
        top_k_min=top_k["min"], top_k_max=len(manifest.vocab) if manifest else "",
        max_length_min=max_length["min"], max_length_max=settings.max_length,
        max_length_default=min(settings.default_max_length, settings.max_length))  # as parsing.check_generate
    return page("namegen playground", body)


@router.get("/model/card")
async def model_card(request: Request) -> HTMLResponse:
    state = request.app.state.model
    engine = state.engine  # once: a reload swaps state.model.engine, not this request's
    if engine is None:
        reason = escape(state.reason or "loading")  # a reason code: paths and onnxruntime messages stay in the log
        return page("model card", f'<h1>No model is served yet</h1><p id="refused">{reason}</p>', status=503)
    manifest, root = engine.model.manifest, engine.model.path
    catalog = await asyncio.to_thread(CATALOGS.get, manifest, root)  # built once per version
    refused = f"version {state.refused_version}: {state.reason}" if state.refused_version else None
    return page(f"{manifest.name} {manifest.version}", render_card(manifest, catalog, refused, examples(engine)))


def examples(engine: Engine) -> tuple[int, list[str]]:
    """A few names of the version, for its card: the same ones every visit, drawn once per engine."""
    names = EXAMPLES.get(engine)
    if names is None:
        gen = offline.generate(engine, count=EXAMPLE_COUNT, seed=EXAMPLE_SEED, constraints=Constraints(unique=True),
                               case="title", seconds=None)
        names = EXAMPLES[engine] = gen.names
    return EXAMPLE_SEED, names


@router.get("/model/files/{version}/{path:path}")
async def report_file(request: Request, version: str, path: str) -> Response:
    """A file of the served version's report, looked up by name in its catalog (never opened by path)."""
    engine = request.app.state.model.engine
    if engine is None or version != engine.model.manifest.version:
        raise _not_found()
    catalog = await asyncio.to_thread(CATALOGS.get, engine.model.manifest, engine.model.path)
    f = catalog.get(path)
    if f is None:
        raise _not_found()
    return Response(f.data, media_type=f.media_type, headers={"Cache-Control": REPORT_CACHE})


@router.get("/static/{name}")
async def static(request: Request, name: str) -> Response:
    f = STATIC.get(name)
    if f is None:
        raise _not_found()
    headers = {"Cache-Control": STATIC_CACHE, "ETag": f.etag}
    if request.headers.get("if-none-match") == f.etag:
        return Response(status_code=304, headers=headers)
    return Response(f.data, media_type=f.media_type, headers=headers)


def _not_found() -> HTTPException:
    return HTTPException(404, "Not Found")  # the app's error shape, like any unknown route
