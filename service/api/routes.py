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
from service.api.parsing import checked_generate, json_body, query_parameters, score_request
from service.api.schemas import (
    ErrorResponse, GenerateQuery, GenerateRequest, GenerateResponse, NotReadyResponse, ReadyResponse, ScoreRequest,
    ScoreResponse,
)
from service.settings import Settings

router = APIRouter()

ERRORS: dict[int | str, dict[str, Any]] = {
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


def served(request: Request) -> Served:
    """Called first by each model route (a plain call: FastAPI's dependency machinery costs more
    per request than generating a name). 503 while no validated model is loaded."""
    state = request.app.state
    engine = state.model.engine
    if engine is None:
        raise HTTPException(503, "no validated model is loaded yet", headers={"Retry-After": "2"})
    return Served(engine, state.settings, state.metrics)


async def generate(request: Request) -> Response:
    s = served(request)
    engine = s.engine
    p, c = await checked_generate(request, engine, s.settings)
    seed = p.seed if p.seed is not None else request.app.state.seeds.getrandbits(63)
    job = GenerateJob(engine, p.count, seed, temperature=p.temperature, top_k=p.top_k, prefix=c.prefix,
                      max_length=c.max_length, constraints=c.constraints, case=p.case)
    try:
        gen = await run_job(request, job)
    except Abandoned:
        return Response(status_code=GONE)
    s.metrics.names.inc(len(gen.names))
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
    s = served(request)
    engine = s.engine
    body = await score_request(request, engine, s.settings)
    try:
        job = await run_job(request, ScoreJob(engine, body.names))
    except Abandoned:
        return Response(status_code=GONE)
    s.metrics.scored.inc(len(body.names))

    async def answer():  # streamed a piece at a time, each written on the event loop when sent
        for piece in answers.scored(job, body.per_char):
            yield piece
    return StreamingResponse(answer(), media_type="application/json")


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict:
    return answers.ALIVE


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": NotReadyResponse}},
            summary="200 only when a validated model is loaded (and any refused newer version, by reason code)")
async def readyz(request: Request) -> Response:
    state = request.app.state.model
    if state.engine is None:
        return JSONResponse(answers.not_ready(state), status_code=503, headers={"Retry-After": "2"})
    return JSONResponse(answers.ready(state))


@router.get("/model", responses={503: {"model": ErrorResponse}}, summary="The served model's manifest summary")
async def model(request: Request) -> dict:
    return answers.model_summary(served(request).engine, request.app.state.model)


@router.get("/metrics", summary="Prometheus metrics (text format)")
async def metrics_endpoint(request: Request) -> Response:
    state = request.app.state
    if state.model.engine is not None:
        state.metrics.model_rows.set(state.model.engine.rows.computed)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
