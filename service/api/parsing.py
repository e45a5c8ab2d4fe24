"""Request parsing for the model routes: one pydantic validation per request (FastAPI's
per-parameter machinery costs more than generating a name), then the limits that depend on the
settings or on the model. Every failure is a RequestValidationError whose items name the field."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from service.core.constraints import Constraints
from service.core.engine import Engine
from service.api.schemas import GenerateQuery, GenerateRequest, ModelQuery, ScoreRequest
from service.settings import Settings

M = TypeVar("M", bound=BaseModel)


def invalid(where: str, field: str | int, message: str, value: Any, *path: str | int) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": (where, *path, field), "msg": message,
                                    "input": value}])


def parse(model: type[M], where: str, *, json: bytes | None = None, query: dict | None = None) -> M:
    """A JSON body or a query validated in one call; errors carry loc (where, field...) like
    FastAPI's own (malformed JSON, invalid UTF-8 and too deep nesting included)."""
    try:
        return model.model_validate_json(json) if json is not None else model.model_validate(query)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": (where, *err["loc"])} for err in e.errors()]) from None


def query(request: Request) -> dict[str, str]:
    """The query parameters; a parameter given twice is an error (which value was meant?)."""
    # What Starlette's request.query_params parses, without building its multi-dict (a third of the cost).
    text = request.scope["query_string"].decode("latin-1")
    if "%" in text or "+" in text:
        items = parse_qsl(text, keep_blank_values=True)
    else:  # nothing to unquote: parse_qsl's own split (empty parts skipped, a part without '=' is blank)
        items = [(name, value) for name, _, value in (part.partition("=") for part in text.split("&") if part)]
    params = dict(items)
    if len(params) != len(items):
        seen: set[str] = set()
        for name, value in items:
            if name in seen:
                raise invalid("query", name, "given more than once", value)
            seen.add(name)
    return params


def model_query(request: Request) -> ModelQuery:
    """`model` and `version` from the query (GET /model, /model/card)."""
    return parse(ModelQuery, "query", query=query(request))


async def generate_request(request: Request) -> tuple[GenerateRequest, str]:
    """(parameters, where) of POST (JSON body; empty means all defaults) or GET (query)."""
    if request.method == "GET":
        return parse(GenerateQuery, "query", query=query(request)), "query"
    body = await request.body()
    return (parse(GenerateRequest, "body", json=body) if body.strip() else GenerateRequest()), "body"


async def checked_generate(request: Request, served: Callable) -> tuple[Any, GenerateRequest, Checked]:
    """A /generate request parsed, its model picked by `served(request, model, version)` (404/503 from
    there) and checked, every failing field reported at once: when the schema refuses some fields, the
    others are still checked against the settings and the model. (what served returned, params, checks)"""
    try:
        p, where = await generate_request(request)
    except RequestValidationError as e:
        raise await _with_checks(e, request, served) from None
    s = await served(request, p.model, p.version)
    return s, p, check_generate(p, where, s.engine, s.settings)


def _named(data: dict, refused: set, field: str) -> str | None:
    value = data.get(field)
    return value if field not in refused and isinstance(value, str) else None


async def _with_checks(e: RequestValidationError, request: Request, served: Callable) -> RequestValidationError:
    """The schema's errors, plus check_generate's for the fields the schema accepted."""
    refused = {err["loc"][1] for err in e.errors() if len(err.get("loc", ())) > 1}
    if not refused:  # malformed JSON: no field to leave out
        return e
    if request.method == "GET":
        where, model, data = "query", GenerateQuery, query(request)
    else:
        where, model = "body", GenerateRequest
        try:  # (pydantic parsed this body, so it nests no deeper than its own limit)
            data = json.loads(await request.body())
        except (ValueError, RecursionError):
            return e
    if not isinstance(data, dict):
        return e
    try:  # the model the request names, if that much of it is valid
        s = await served(request, _named(data, refused, "model"), _named(data, refused, "version"))
    except HTTPException:
        return e
    engine, settings = s.engine, s.settings
    try:
        rest = model.model_validate({k: v for k, v in data.items() if k not in refused})
        check_generate(rest, where, engine, settings)
    except ValidationError:
        return e
    except RequestValidationError as more:
        # a refused max_length was replaced by its default: lengths measured against it say nothing
        extra = [x for x in more.errors() if x["loc"][1] not in refused
                 and not ("max_length" in refused and "max_length" in x["msg"])]
        return RequestValidationError([*e.errors(), *extra])
    return e


@dataclass(frozen=True)
class Checked:
    """A /generate request's parameters as the job takes them: texts folded to the model's case."""

    max_length: int
    prefix: str
    constraints: Constraints


def check_generate(p: GenerateRequest, where: str, engine: Engine, settings: Settings) -> Checked:
    """Limits that depend on settings or on the model, every failing field at once."""
    errors = []

    def fail(field: str, message: str, value: Any) -> None:
        errors.append({"type": "value_error", "loc": (where, field), "msg": message, "input": value})

    if p.count > settings.max_count:
        fail("count", f"must be <= {settings.max_count}", p.count)
    max_length = p.max_length if p.max_length is not None else min(settings.default_max_length,
                                                                   settings.max_length)
    if max_length > settings.max_length:
        fail("max_length", f"must be <= {settings.max_length}", p.max_length)
    if p.top_k is not None and p.top_k > engine.vocab_size:
        fail("top_k", f"must be <= {engine.vocab_size} (the vocabulary size)", p.top_k)
    texts = {"prefix": fold(p.prefix, engine), "suffix": fold(p.suffix, engine), "contains": fold(p.contains, engine)}
    for field, text in texts.items():
        bad = outside(getattr(p, field), engine)
        if bad:
            fail(field, f"characters {bad!r} are not in the model's vocabulary {engine.vocab[1:]!r}",
                 getattr(p, field))
        elif len(text) > max_length - (field == "prefix"):
            fail(field, f"must be {'shorter than' if field == 'prefix' else 'at most'} max_length ({max_length})",
                 getattr(p, field))
    if p.min_length is not None and p.min_length > max_length:
        fail("min_length", f"must be <= max_length ({max_length})", p.min_length)
    if errors:
        raise RequestValidationError(errors)
    constraints = Constraints(p.novel_only, p.min_length or 0, texts["suffix"], texts["contains"],
                              frozenset(fold(name, engine) for name in p.exclude), p.unique)
    return Checked(max_length, texts["prefix"], constraints)


def fold(text: str, engine: Engine) -> str:
    """Text in the model's case: people type "Ma" to a lower-case model. Character by character, and
    only capitals that are the upper case of their lower case (the Kelvin sign folds to 'k' but is
    not 'K'), so each typed character stays one character and the schema's pattern says the same."""
    if not text or engine.vocab != engine.vocab.lower():
        return text
    return "".join(low if len(low := c.lower()) == 1 and low.upper() == c else c for c in text)


def outside(typed: str, engine: Engine, folding: bool = True) -> str:
    """The characters of `typed` the model cannot write (after folding), each once, in the order typed."""
    if not typed:
        return ""
    stoi, folded = engine.stoi, fold(typed, engine) if folding else typed
    return "".join(dict.fromkeys(t for t, c in zip(typed, folded) if c not in stoi or c == "."))


async def score_request(request: Request) -> ScoreRequest:
    """The /score body, parsed like /generate's (check_score then checks it against the model)."""
    return parse(ScoreRequest, "body", json=await request.body())


def check_score(body: ScoreRequest, engine: Engine, settings: Settings) -> ScoreRequest:
    """The /score body checked against the settings and the vocabulary."""
    if len(body.names) > settings.max_score_names:
        raise invalid("body", "names", f"at most {settings.max_score_names} names", len(body.names))
    for i, name in enumerate(body.names):
        bad = outside(name, engine, folding=False)
        if bad:
            raise invalid("body", i, f"characters {bad!r} are not in the model's vocabulary "
                                     f"{engine.vocab[1:]!r}", name, "names")
        if len(name) > settings.max_length:
            raise invalid("body", i, f"longer than {settings.max_length} characters", name, "names")
    return body


def query_parameters(model: type[BaseModel]) -> list[dict]:
    """OpenAPI entries for a model's fields as query parameters."""
    schema = model.model_json_schema()
    return [{"name": name, "in": "query", "required": False, "schema": prop,
             "description": prop.get("description", "")} for name, prop in schema["properties"].items()]


def json_body(model: type[BaseModel], required: bool = False) -> dict:
    """OpenAPI entry for a JSON body of the model."""
    return {"required": required, "content": {"application/json": {"schema": model.model_json_schema()}}}
