"""The Open Inference Protocol over REST (the "V2" protocol of KServe, Triton and MLServer).

Health, server and model metadata, model readiness, and `infer`: the served graph run on the
client's own contexts (input `context`, INT64 [-1, block_size]) through the worker's scheduler, which
answers every infer job of a version waiting at a step with one model call; the output `logits` is
the graph's FP32 [-1, vocab] as it is. Tensors come as JSON (data flat or nested) or, with the
protocol's binary tensor extension, as raw little-endian bytes after the JSON header; either way
the answer is the same numbers. The generate extension (`.../generate`) is mapped onto /generate.
Errors are the protocol's `{"error": "..."}` with its status codes (400 for a bad request, 404 for
an unknown model or version, 503 while not ready or too busy).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from artifact.layout import list_versions
from service.api import answers
from service.api.gate import Abandoned, run_job
from service.api.parsing import check_generate, parse
from service.api.routes import GONE, pick
from service.api.schemas import GenerateRequest, ProtocolErrorResponse
from service.core.engine import Engine
from service.core.jobs import GenerateJob, InferJob

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])

INPUT, OUTPUT = "context", "logits"
INTEGER_TYPES = {"INT64": np.int64, "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8}
HEADER_LENGTH = "inference-header-content-length"  # the binary extension: bytes of JSON before the tensors
EXTENSIONS = ["binary_tensor_data", "generate"]
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ProtocolErrorResponse, "description": "a bad request: the message names the input and the rule"},
    404: {"model": ProtocolErrorResponse, "description": "an unknown model, or a version not in the registry"},
    503: {"model": ProtocolErrorResponse, "description": "not ready, or too much work in flight (see Retry-After)"},
}


class ProtocolError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def answered(request: Request, handler, *args) -> Response:
    """Run a handler; every failure becomes the protocol's error object (never the API's detail list)."""
    try:
        return await handler(request, *args)
    except ProtocolError as e:
        return error(e.status, str(e), e.headers)
    except RequestValidationError as e:
        items = answers.invalid(e.errors())["detail"]
        return error(400, "; ".join(f"{i['field']}: {i['message']}" for i in items))
    except HTTPException as e:  # Refused (unknown model or version, not ready) and the gate's 503
        return error(e.status_code, str(e.detail), e.headers)
    except Abandoned:
        return Response(status_code=GONE)


async def engine_for(request: Request, name: str, version: str | None) -> Engine:
    return await pick(request.app.state.pool, name, version)


# ---- health and metadata ----------------------------------------------------------------------

@router.get("", summary="Server metadata")
async def server_metadata() -> dict:
    return {"name": "namegen", "version": "1", "extensions": EXTENSIONS}


@router.get("/health/live", summary="200 while the process runs")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready", summary="200 when the default model is ready (503 before)",
            responses={503: ERRORS[503]})
async def ready(request: Request) -> Response:
    if request.app.state.model.engine is None:
        return error(503, "not ready: the default model has no validated version loaded", {"Retry-After": "2"})
    return JSONResponse({"ready": True})


async def _metadata(request: Request, name: str, version: str | None) -> Response:
    engine = await engine_for(request, name, version)
    return JSONResponse({
        "name": engine.name, "versions": list_versions(request.app.state.settings.model_dir, engine.name),
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT, "datatype": "INT64", "shape": [-1, engine.block_size]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, engine.vocab_size]}],
        "parameters": {"version": engine.version, "vocab": engine.vocab},
    })


async def _ready(request: Request, name: str, version: str | None) -> Response:
    engine = await engine_for(request, name, version)
    return JSONResponse({"name": engine.name, "version": engine.version, "ready": True})






# ---- infer ----------------------------------------------------------------------------------------

def read_request(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """(the JSON request object, the binary tensor bytes after it, if any)."""
    split = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ProtocolError(400, f"{HEADER_LENGTH} must be a byte count within the body")
        split = int(header_length)
    try:
        obj = json.loads(body[:split])
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(400, f"the request is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(400, "the request must be a JSON object")
    return obj, body[split:]


def contexts_of(obj: dict, binary: bytes, engine: Engine, max_rows: int) -> np.ndarray:
    """The `context` input as (n, block_size) int64 character ids, checked against the model."""
    inputs = obj.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(400, f"expected exactly one input, {INPUT!r}")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise ProtocolError(400, f"unexpected input {tensor.get('name')!r}; the model's input is {INPUT!r}")
    dtype = INTEGER_TYPES.get(tensor.get("datatype"))
    if dtype is None:
        raise ProtocolError(400, f"input {INPUT!r} must have datatype INT64 (got {tensor.get('datatype')!r})")
    shape = tensor.get("shape")
    bs = engine.block_size
    if (not isinstance(shape, list) or len(shape) != 2 or not all(type(d) is int for d in shape)
            or shape[1] != bs or shape[0] < 1):
        raise ProtocolError(400, f"input {INPUT!r} must have shape [n, {bs}] with n >= 1 (got {shape!r})")
    if shape[0] > max_rows:
        raise ProtocolError(400, f"at most {max_rows} contexts per request (got {shape[0]})")
    size = shape[0] * bs
    params = tensor.get("parameters") or {}
    if isinstance(params, dict) and "binary_data_size" in params:
        nbytes = params["binary_data_size"]
        if nbytes != size * np.dtype(dtype).itemsize or nbytes != len(binary):
            raise ProtocolError(400, f"binary_data_size {nbytes!r} does not hold {size} {tensor['datatype']} values")
        values = np.frombuffer(binary, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        try:
            values = np.asarray(tensor.get("data"))
        except ValueError:
            raise ProtocolError(400, f"input {INPUT!r}: data is not a regular array") from None
        if values.dtype.kind not in "iu" or values.size != size:
            raise ProtocolError(400, f"input {INPUT!r}: data must be {size} integers (flat or nested as the shape)")
    contexts = values.astype(np.int64).reshape(shape[0], bs)  # (n, block_size)
    if contexts.min() < 0 or contexts.max() >= engine.vocab_size:
        raise ProtocolError(400, f"input {INPUT!r}: character ids must be in 0..{engine.vocab_size - 1}")
    return contexts


def float_text(values: np.ndarray) -> str:
    """float32 values as JSON numbers, comma-separated: each the shortest text that reads back as
    the same float32 (orjson writes float32 arrays natively; Python's own formatting would print
    each value on its own)."""
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()  # native order: what orjson writes
    return orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode()


def binary_output(obj: dict) -> bool:
    """Whether the client asked for `logits` as raw bytes (the binary tensor extension)."""
    outputs = obj.get("outputs")
    if outputs is None:
        params = obj.get("parameters") or {}
        return isinstance(params, dict) and params.get("binary_data_output") is True
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and o.get("name") == OUTPUT for o in outputs):
        raise ProtocolError(400, f"the model's only output is {OUTPUT!r}")
    return any(isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") is True for o in outputs)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    obj, binary = read_request(await request.body(), request.headers.get(HEADER_LENGTH))
    engine = await engine_for(request, name, version)
    contexts = contexts_of(obj, binary, engine, request.app.state.settings.max_count)
    as_bytes = binary_output(obj)
    logits = await run_job(request, InferJob(engine, contexts))  # (n, V) float32
    request.app.state.metrics.inferred.labels(engine.name).inc(len(contexts))
    output: dict[str, Any] = {"name": OUTPUT, "datatype": "FP32", "shape": list(logits.shape)}
    answer: dict[str, Any] = {"model_name": engine.name, "model_version": engine.version, "outputs": [output]}
    if isinstance(obj.get("id"), str):
        answer["id"] = obj["id"]
    if not np.isfinite(logits).all():
        raise ProtocolError(500, "the model computed non-finite logits")
    if not as_bytes:
        outputs, rest = json.dumps(answer.pop("outputs")[0])[:-1], json.dumps(answer)[:-1]  # both left open
        return Response(f'{rest},"outputs":[{outputs},"data":[{float_text(logits)}]}}]}}',
                        media_type="application/json")
    data = logits.astype("<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(data)}
    header = json.dumps(answer, separators=(",", ":")).encode()
    return Response(header + data, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})




# ---- the generate extension, mapped onto /generate ------------------------------------------------

async def _generate(request: Request, name: str, version: str | None) -> Response:
    obj, _ = read_request(await request.body(), None)
    params = obj.get("parameters") or {}
    text = obj.get("text_input", "")
    if not isinstance(params, dict) or not isinstance(text, str):
        raise ProtocolError(400, "text_input must be a string (the prefix) and parameters an object")
    p = parse(GenerateRequest, "parameters", query={**params, "prefix": text}) if params or text else GenerateRequest()
    engine = await engine_for(request, name, version)
    settings = request.app.state.settings
    c = check_generate(p, "parameters", engine, settings)
    seed = p.seed if p.seed is not None else request.app.state.seeds.getrandbits(63)
    gen = await run_job(request, GenerateJob(engine, p.count, seed, temperature=p.temperature, top_k=p.top_k,
                                             prefix=c.prefix, max_length=c.max_length, constraints=c.constraints,
                                             case=p.case))
    request.app.state.metrics.generated(engine.name, len(gen.names))
    return JSONResponse({"model_name": engine.name, "model_version": engine.version,
                         "text_output": "\n".join(gen.names), "seed": seed, "names": gen.names})


plain_routes: list[Route] = []  # what serves the model paths (see install)


def both(method: str, tail: str, handler, summary: str) -> None:
    """A protocol path for the model's CURRENT and the same path under /versions/{version}."""
    async def current(request: Request, name: str) -> Response:
        return await answered(request, handler, name, None)

    async def pinned(request: Request, name: str, version: str) -> Response:
        return await answered(request, handler, name, version)

    async def plain(request: Request) -> Response:
        params = request.path_params
        return await answered(request, handler, params["name"], params.get("version"))

    for path, endpoint, which in ((f"/models/{{name}}{tail}", current, "the model's CURRENT"),
                                  (f"/models/{{name}}/versions/{{version}}{tail}", pinned, "a published version")):
        # The POST bodies follow the protocol's own specification, with rules no schema here can state
        # (the shape against the model's block size, the data against the shape): they stay out of
        # this API document, whose every schema-valid request must be accepted.
        router.add_api_route(path, endpoint, methods=[method], name=f"{handler.__name__}_{endpoint.__name__}",
                             summary=f"{summary}: {which}", responses=ERRORS, include_in_schema=method == "GET")
        plain_routes.append(Route(router.prefix + path, plain, methods=[method]))


both("GET", "", _metadata, "Model metadata")
both("GET", "/ready", _ready, "200 once loaded")
both("POST", "/infer", _infer, "The graph's logits for the given contexts")
both("POST", "/generate", _generate, "The generate extension (text_input: the prefix; parameters: as /generate's)")


def install(app) -> None:
    """The protocol's routes. The model paths are served by plain Starlette routes placed first: the
    handlers read their own bodies, so FastAPI's per-request parameter machinery would only add cost;
    the FastAPI routes behind them (never reached) describe the GET paths in the API document."""
    app.include_router(router)
    app.router.routes[:0] = plain_routes
