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

from service.api.parsing import model_query
from service.api.routes import served
from service.api.schemas import GenerateRequest
from service.core import offline
from service.core.constraints import MAX_EXCLUDE, Constraints
from service.core.engine import Engine
from service.web.card import corpus_description, render_card
from service.web.files import Catalogs

router = APIRouter(include_in_schema=False)

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
    """Add the pages to an app (called by service.api.app.create_app); their headers come from the edge."""
    app.include_router(router)


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
    settings, engine, pool = state.settings, state.model.engine, state.pool
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
        max_length_default=min(settings.default_max_length, settings.max_length),  # as parsing.check_generate
        model_options=_model_options(pool))
    return page("namegen playground", body)


def _model_options(pool) -> str:
    """The playground's model picker: every served model, the default one first and selected, with
    its corpus described in words when its manifest has a description."""
    options = []
    for name in sorted(pool.names, key=lambda n: n != pool.default):
        engine = pool.states[name].engine
        description = corpus_description(engine.model.manifest) if engine is not None else None
        label = f"{name}: {description}" if description else name
        options.append(f'<option value="{escape(name)}"{" selected" if name == pool.default else ""}>'
                       f"{escape(label)}</option>")
    return "".join(options)


@router.get("/model/card")
async def model_card(request: Request) -> HTMLResponse:
    choice = model_query(request)
    pool = request.app.state.pool
    state = pool.state(choice.model) if choice.model in pool.states or choice.model is None else None
    if state is not None and state.engine is None and choice.version is None:
        reason = escape(state.reason or "loading")  # a reason code: paths and onnxruntime messages stay in the log
        return page("model card", f'<h1>No model is served yet</h1><p id="refused">{reason}</p>', status=503)
    engine = (await served(request, choice.model, choice.version)).engine  # once: a reload swaps the state's
    state = pool.state(engine.name)
    manifest, root = engine.model.manifest, engine.model.path
    catalog = await asyncio.to_thread(CATALOGS.get, manifest, root)  # built once per version
    refused = f"version {state.refused_version}: {state.reason}" if state.refused_version else None
    return page(f"{manifest.name} {manifest.version}",
                render_card(manifest, catalog, refused, pool.names, examples(engine)))


def _loaded(pool, version: str):
    """The loaded engine of that version, whichever model it belongs to (current or pinned)."""
    engines = [state.engine for state in pool.states.values()] + list(pool.pinned.values())
    return next((e for e in engines if e is not None and e.version == version), None)


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
    """A file of a loaded version's report, looked up by name in its catalog (never opened by path)."""
    engine = _loaded(request.app.state.pool, version)
    if engine is None:
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
