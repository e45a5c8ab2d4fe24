"""/docs (Swagger UI) and /redoc (ReDoc) from files inside the installed packages, under the same CSP
as every other page: Swagger UI's and ReDoc's bundles come from the `fastapi-offline` wheel (its
version pinned in the lock, so pip checks the wheel's hash and its RECORD lists each file's), the
pages and the script that starts each viewer from service/web/static/. Nothing is fetched from
elsewhere, so the pages work on a machine without internet and run no third-party code from a CDN."""
from __future__ import annotations

import hashlib
from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response

from service.web.pages import STATIC_CACHE, _not_found, page

VIEWER_FILES = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
                "swagger-ui.css": "text/css; charset=utf-8",
                "redoc.standalone.js": "text/javascript; charset=utf-8"}


def _load() -> dict[str, tuple[bytes, str, str]]:
    """The viewers' files, read once when the app is built (not at import): name -> (data, type, etag)."""
    root = resources.files("fastapi_offline").joinpath("static")
    files = {}
    for name, media_type in VIEWER_FILES.items():
        data = root.joinpath(name).read_bytes()
        files[name] = (data, media_type, f'"{hashlib.sha256(data).hexdigest()[:16]}"')
    return files


def install(app: FastAPI) -> None:
    files = _load()
    router = APIRouter(include_in_schema=False)
    docs = page("namegen API", '<link rel="stylesheet" href="/docs-files/swagger-ui.css"><div id="swagger-ui"></div>'
                '<script src="/docs-files/swagger-ui-bundle.js"></script><script src="/static/docs.js"></script>')
    redoc = page("namegen API", '<div id="redoc"></div><script src="/docs-files/redoc.standalone.js"></script>'
                 '<script src="/static/redoc.js"></script>')

    @router.get("/docs")
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(docs.body, headers={"Cache-Control": "no-cache"})

    @router.get("/redoc")
    async def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc.body, headers={"Cache-Control": "no-cache"})

    @router.get("/docs-files/{name}")
    async def viewer_file(name: str) -> Response:
        f = files.get(name)
        if f is None:
            raise _not_found()
        data, media_type, etag = f
        return Response(data, media_type=media_type, headers={"Cache-Control": STATIC_CACHE, "ETag": etag})

    app.include_router(router)
