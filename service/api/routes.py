"""HTTP routes: parse, take the engine reference once, run the job through the worker's scheduler."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.api import answers
from service.core.engine import Engine
from service.core.jobs import GenerateJob, ScoreJob
from service.api.gate import Abandoned, run_job
from service.ops.metrics import Metrics
from service.api.parsing import check_score, checked_generate, json_body, model_query, query_parameters, score_request
from service.api.schemas import (
    ErrorResponse, GenerateQuery, GenerateRequest, GenerateResponse, ModelQuery, ModelsResponse, NotReadyResponse,
    ReadyResponse, ScoreRequest, ScoreResponse,
)
from service.ops.pool import ModelPool, NotServed, UnknownModel, UnknownVersion
from service.settings import Settings

router = APIRouter()

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "an unknown model (the known ones are named), or a version "
                                                 "that is not in the registry"},
    422: {"model": ErrorResponse, "description": "invalid input; each item names the field and the reason"},
    503: {"model": ErrorResponse, "description": "no model loaded yet, or too much work in flight "
                                                 "(see Retry-After)"},
}
GONE = 499  # the status logged for a request whose client went away (nginx's convention)


@dataclass(frozen=True)
class Served:
    """What a request works with, read once at its start: a reload swaps app.state.model.engine,
    never this request's engine."""

    engine: Engine
    settings: Settings
    metrics: Metrics


class Refused(HTTPException):
    """An HTTP error that names the request field it is about (the app's handler writes it)."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(status, message, headers=headers)
        self.field = field


async def served(request: Request, model: str | None = None, version: str | None = None) -> Served:
    """Called by each model route once its parameters are parsed (a plain call: FastAPI's dependency
    machinery costs more per request than generating a name). The default model's CURRENT unless
    the request names a model or a version; 404 for an unknown one, 503 while none is loaded."""
    state = request.app.state
    if version is None and (model is None or model == state.settings.model_name):  # the default model's CURRENT
        engine = state.model.engine
        if engine is None:
            raise Refused(503, "no validated model is loaded yet", headers={"Retry-After": "2"})
    else:
        engine = await pick(state.pool, model, version)
    return Served(engine, state.settings, state.metrics)


async def pick(pool: ModelPool, model: str | None, version: str | None) -> Engine:
    try:
        return await pool.engine(model, version)
    except UnknownModel as e:
        raise Refused(404, str(e), "model") from None
    except UnknownVersion as e:
        raise Refused(404, str(e), "version") from None
    except NotServed as e:
        raise Refused(503, str(e), "version" if version else "model", {"Retry-After": "2"}) from None


async def generate(request: Request) -> Response:
    s, p, c = await checked_generate(request, served)
    engine = s.engine
    seed = p.seed if p.seed is not None else request.app.state.seeds.getrandbits(63)
    job = GenerateJob(engine, p.count, seed, temperature=p.temperature, top_k=p.top_k, prefix=c.prefix,
                      max_length=c.max_length, constraints=c.constraints, case=p.case)
    try:
        gen = await run_job(request, job)
    except Abandoned:
        return Response(status_code=GONE)
    s.metrics.generated(engine.name, len(gen.names))
    return Response(answers.generated(engine, seed, gen), media_type="application/json")


@router.post("/generate", response_model=GenerateResponse, responses=ERRORS,
             summary="Generate names (JSON body; an empty body means all defaults)",
             openapi_extra={"requestBody": json_body(GenerateRequest)})
async def generate_post(request: Request) -> Response:
    return await generate(request)


@router.get("/generate", response_model=GenerateResponse, responses=ERRORS,
            summary="Generate names (the same fields as query parameters)",
            openapi_extra={"parameters": query_parameters(GenerateQuery)})
async def generate_get(request: Request) -> Response:
    return await generate(request)


@router.post("/score", response_model=ScoreResponse, responses=ERRORS,
             summary="Log-probability of given names, in total and (per_char) per character",
             openapi_extra={"requestBody": json_body(ScoreRequest, required=True)})
async def score(request: Request) -> Response:
    body = await score_request(request)
    s = await served(request, body.model, body.version)
    engine = s.engine
    check_score(body, engine, s.settings)
    try:
        job = await run_job(request, ScoreJob(engine, body.names))
    except Abandoned:
        return Response(status_code=GONE)
    s.metrics.scored.labels(engine.name).inc(len(body.names))

    async def answer():  # streamed a piece at a time, each written on the event loop when sent
        for piece in answers.scored(job, body.per_char):
            yield piece
    return StreamingResponse(answer(), media_type="application/json")


ALIVE = Response(answers.ALIVE_BYTES, media_type="application/json")  # made once: probes come often (a
# Response is sent without being changed, so one serves every probe)


@router.get("/healthz", response_model=dict, summary="The process is alive")
async def healthz() -> Response:
    return ALIVE


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": NotReadyResponse}},
            summary="200 only when a validated model is loaded (and any refused newer version, by reason code)")
async def readyz(request: Request) -> Response:
    state, pool = request.app.state.model, request.app.state.pool
    models = [pool.describe(name) for name in pool.names]
    if state.engine is None:
        return JSONResponse({**answers.not_ready(state), "models": models}, status_code=503,
                            headers={"Retry-After": "2"})
    return JSONResponse({**answers.ready(state), "models": models})


@router.get("/models", response_model=ModelsResponse,
            summary="Every model served: its current version, state and the versions loaded")
async def models(request: Request) -> dict:
    pool = request.app.state.pool
    return {"models": [pool.describe(name) for name in pool.names]}


async def chosen(request: Request) -> tuple[Engine, Any]:
    """The engine and model state named by `model` and `version` query parameters (as /generate's)."""
    choice = model_query(request)
    engine = (await served(request, choice.model, choice.version)).engine
    return engine, request.app.state.pool.state(engine.name)


@router.get("/model", responses={**ERRORS, 503: {"model": ErrorResponse}},
            summary="A model's manifest summary (query `model`, `version`: default the default model's CURRENT)",
            openapi_extra={"parameters": query_parameters(ModelQuery)})
async def model(request: Request) -> dict:
    engine, state = await chosen(request)
    return answers.model_summary(engine, state)


@router.get("/metrics", summary="Prometheus metrics (text format)")
async def metrics_endpoint(request: Request) -> Response:
    state = request.app.state
    if state.model.engine is not None:  # the default model's
        state.metrics.model_rows.set(state.model.engine.rows.computed)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
