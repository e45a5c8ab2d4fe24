"""The framework floors the serving benchmark compares our edge with: the least a Starlette route
and a FastAPI `async def` route cost per request under the same uvicorn (httptools, no access log).
Served by bench/serve_speed.py as `uvicorn floor_apps:starlette_app` / `floor_apps:fastapi_app`."""
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request):
    return JSONResponse({"status": "ok"})


starlette_app = Starlette(routes=[Route("/healthz", hello)])

fastapi_app = FastAPI()


@fastapi_app.get("/healthz")
async def fastapi_hello() -> dict:
    return {"status": "ok"}
