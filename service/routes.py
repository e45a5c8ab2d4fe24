"""HTTP routes: validate, take the engine reference once, run the CPU work off the event loop."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from service.engine import Engine
from service.metrics import Metrics
from service.schemas import (
    ErrorResponse, GenerateQuery, NotReadyResponse, ReadyResponse, GenerateRequest, GenerateResponse, ScoreRequest, ScoreResponse,
)
from service.settings import Settings

router = APIRouter()
M = TypeVar("M", bound=BaseModel)

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "invalid input; each item names the field and the reason"},
    503: {"model": ErrorResponse, "description": "no model loaded yet, or too many requests in flight "
                                                 "(see Retry-After)"},
}


class Gate:
    """A bound on generations in flight per process. Touched only from the event loop thread."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0


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


def invalid(where: str, field: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": (where, field), "msg": message, "input": value}])


INLINE_STEPS = 64  # work up to this many character steps runs on the event loop (see docs/service.md)
NOVEL_ATTEMPTS = 20  # novel_only may sample up to this many streams per name (the engine's default bound)


async def run_bounded(request: Request, fn: Callable[[], Any], steps: int) -> Any:
    """Run fn unless too many requests are in flight (then 503 at once, no queue). Work of more than
    INLINE_STEPS character steps goes to the app's thread pool; smaller work (a single name: tens of
    microseconds) runs right here, because the hop to a thread costs more than the work itself."""
    gate: Gate = request.app.state.gate
    metrics: Metrics = request.app.state.metrics
    if gate.count >= gate.limit:
        metrics.busy.inc()
        raise HTTPException(503, f"busy: {gate.limit} requests in flight", headers={"Retry-After": "1"})
    gate.count += 1
    metrics.in_flight.set(gate.count)
    try:
        if steps <= INLINE_STEPS:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(request.app.state.executor, fn)
    finally:
        gate.count -= 1
        metrics.in_flight.set(gate.count)


def check_generate(p: GenerateRequest, where: str, engine: Engine, settings: Settings) -> int:
    """Limits that depend on settings or on the model; returns the effective max_length."""
    if p.count > settings.max_count:
        raise invalid(where, "count", f"must be <= {settings.max_count}", p.count)
    max_length = p.max_length if p.max_length is not None else min(settings.default_max_length,
                                                                   settings.max_length)
    if max_length > settings.max_length:
        raise invalid(where, "max_length", f"must be <= {settings.max_length}", p.max_length)
    if p.top_k is not None and p.top_k > engine.vocab_size:
        raise invalid(where, "top_k", f"must be <= {engine.vocab_size} (the vocabulary size)", p.top_k)
    bad = sorted({c for c in p.prefix if c not in engine.stoi or c == "."})
    if bad:
        raise invalid(where, "prefix", f"characters {''.join(bad)!r} are not in the model's vocabulary "
                                       f"{engine.vocab[1:]!r}", p.prefix)
    if len(p.prefix) >= max_length:
        raise invalid(where, "prefix", f"must be shorter than max_length ({max_length})", p.prefix)
    return max_length


async def generate(request: Request, p: GenerateRequest, where: str, s: Served) -> Response:
    engine = s.engine
    max_length = check_generate(p, where, engine, s.settings)
    seed = p.seed if p.seed is not None else request.app.state.seeds.getrandbits(63)
    gen = await run_bounded(request, lambda: engine.generate(
        p.count, seed, temperature=p.temperature, top_k=p.top_k, prefix=p.prefix,
        max_length=max_length, novel_only=p.novel_only),
        steps=p.count * max_length * (NOVEL_ATTEMPTS if p.novel_only else 1))
    s.metrics.names.inc(len(gen.names))
    return JSONResponse({
        "model": {"name": engine.name, "version": engine.version},
        "seed": seed,
        "requested": gen.requested,
        "exhausted": gen.exhausted,
        "names": [{"name": n, "logprob": lp, "novel": nv, "cut": c}
                  for n, lp, nv, c in zip(gen.names, gen.logprobs, gen.novel, gen.cut)],
    })


def parse(model: type[M], where: str, *, json: bytes | None = None, query: dict | None = None) -> M:
    """One pydantic validation of a JSON body or a query; errors carry loc (where, field...) like
    FastAPI's own. (FastAPI's per-parameter machinery costs more than generating a name.)"""
    try:
        return model.model_validate_json(json) if json is not None else model.model_validate(query)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": (where, *err["loc"])} for err in e.errors()]) from None


def query_parameters(model: type[BaseModel]) -> list[dict]:
    """OpenAPI entries for a model's fields as query parameters."""
    schema = model.model_json_schema()
    return [{"name": name, "in": "query", "required": False, "schema": prop,
             "description": prop.get("description", "")} for name, prop in schema["properties"].items()]


def json_body(model: type[BaseModel]) -> dict:
    """OpenAPI entry for an optional JSON body of the model."""
    return {"required": False, "content": {"application/json": {"schema": model.model_json_schema()}}}


@router.post("/generate", response_model=GenerateResponse, responses=ERRORS,
             summary="Generate names (JSON body; an empty body means all defaults)",
             openapi_extra={"requestBody": json_body(GenerateRequest)})
async def generate_post(request: Request) -> Response:
    s = served(request)
    body = await request.body()
    params = parse(GenerateRequest, "body", json=body) if body.strip() else GenerateRequest()
    return await generate(request, params, "body", s)


@router.get("/generate", response_model=GenerateResponse, responses=ERRORS,
            summary="Generate names (the same fields as query parameters)",
            openapi_extra={"parameters": query_parameters(GenerateQuery)})
async def generate_get(request: Request) -> Response:
    s = served(request)
    return await generate(request, parse(GenerateQuery, "query", query=dict(request.query_params)), "query", s)


@router.post("/score", response_model=ScoreResponse, responses=ERRORS,
             summary="Log-probability of given names, per character and in total")
async def score(request: Request, body: ScoreRequest) -> Response:
    s = served(request)
    engine, settings = s.engine, s.settings
    if len(body.names) > settings.max_score_names:
        raise invalid("body", "names", f"at most {settings.max_score_names} names", len(body.names))
    for i, name in enumerate(body.names):
        bad = sorted({c for c in name if c not in engine.stoi or c == "."})
        if bad:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "names", i), "input": name,
                                           "msg": f"characters {''.join(bad)!r} are not in the model's "
                                                  f"vocabulary {engine.vocab[1:]!r}"}])
        if len(name) > settings.max_length:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "names", i), "input": name,
                                           "msg": f"longer than {settings.max_length} characters"}])
    scores = await run_bounded(request, lambda: engine.score(body.names),
                               steps=sum(len(n) + 1 for n in body.names))
    s.metrics.scored.inc(len(scores))
    return JSONResponse({
        "model": {"name": engine.name, "version": engine.version},
        "scores": [{"name": s.name, "logprob": s.logprob, "in_corpus": s.in_corpus,
                    "per_char": [{"char": c, "logprob": lp} for c, lp in s.per_char]} for s in scores],
    })


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": NotReadyResponse}},
            summary="200 only when a validated model is loaded (and any refused newer version, by reason code)")
async def readyz(request: Request) -> Response:
    state = request.app.state.model
    if state.engine is None:  # a reason code and the version tried; the details are in the log
        reason = state.reason or "loading"
        return JSONResponse({"detail": [{"field": None, "message": f"not ready: {reason}"}],
                             "reason": reason, "version": state.refused_version},
                            status_code=503, headers={"Retry-After": "2"})
    return JSONResponse({"status": "ready", "model": {"name": state.engine.name, "version": state.engine.version},
                         "reload": reload_state(state)})


def reload_state(state) -> dict:
    """A refused version and its reason code (null when none): what clients may know of a reload."""
    return {"refused": state.refused_version, "reason": state.reason}


@router.get("/model", responses={503: {"model": ErrorResponse}}, summary="The served model's manifest summary")
async def model(request: Request) -> dict:
    s = served(request)
    state = request.app.state.model
    m = s.engine.model.manifest
    arch = dict(m.architecture)
    return {
        "name": m.name, "version": m.version, "created": m.created,
        "vocab": m.vocab, "vocab_size": len(m.vocab), "block_size": m.block_size,
        "parameters": {k: v for k, v in arch.items() if "param" in k},
        "architecture": arch, "metrics": m.metrics, "health": m.health, "corpus": m.corpus,
        "reload": reload_state(state),
    }


@router.get("/metrics", summary="Prometheus metrics (text format)")
async def metrics_endpoint(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
