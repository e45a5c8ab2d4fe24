"""The OpenAPI document with every limit stated. FastAPI derives the static part from the pydantic
models; the limits that come from the settings (count, max_length, names per /score) and from the
served model (its characters, top_k's maximum) are filled in here, per model version, so that a
client or a fuzzer generating from the schema only makes requests the service accepts."""
from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api import auth
from service.settings import Settings

METRICS_CONTENT = {"text/plain": {"schema": {"type": "string",
                                             "description": "Prometheus text exposition format"}}}


BODY_ERRORS = {"413": "the body is larger than NAMEGEN_MAX_BODY_BYTES",
               "415": "a body that is not JSON (content-type: application/json)"}


def install(app: FastAPI) -> None:
    """Make app.openapi() (hence /openapi.json and /docs) state the limits."""
    cache: dict[str, Any] = {}

    def openapi() -> dict:
        engine = app.state.model.engine
        key = engine.version if engine is not None else None
        if cache.get("key", ...) != key:
            base = cache.get("base") or our_422(get_openapi(title=app.title, version=app.version,
                                                            description=app.description, routes=app.routes))
            cache["base"], cache["key"] = base, key
            cache["doc"] = with_limits(copy.deepcopy(base), app.state.settings, engine)
        return cache["doc"]

    app.openapi = openapi


def our_422(doc: dict) -> dict:
    """FastAPI documents a 422 of its own shape on every route with parameters; the service answers
    every 422 with ErrorResponse (app.py's handler), so the document says that shape, described."""
    components = doc.get("components", {}).get("schemas", {})
    framework = "#/components/schemas/HTTPValidationError"
    for path in doc["paths"].values():
        for operation in path.values():
            answer = operation.get("responses", {}).get("422", {})
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") == framework:
                schema["$ref"] = "#/components/schemas/ErrorResponse"
                answer["description"] = "invalid input; each item names the field and the reason"
    if "ErrorResponse" in components:
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return doc


def vocab_pattern(chars: str) -> str:
    """A regular expression (ECMA and Python alike) for strings of these characters."""
    body = "".join(c if c.isalnum() and c.isascii() else f"\\u{ord(c):04x}" for c in chars)
    return f"^[{body}]*$"


def flatten_optional(schema: dict, nullable: bool) -> None:
    """pydantic writes an optional field as anyOf [X, null]; state it as X with type [X's, "null"]
    (OpenAPI 3.1), or as plain X where null cannot occur (a query string). Generators handle
    bounds on a plain type more reliably than inside anyOf (schemathesis 4's coverage phase did not)."""
    branches = schema.get("anyOf")
    if not branches or len(branches) != 2 or {"type": "null"} not in branches:
        return
    (inner,) = [b for b in branches if b != {"type": "null"}]
    if not isinstance(inner.get("type"), str):
        return
    del schema["anyOf"]
    schema.update(inner)
    if nullable:
        schema["type"] = [inner["type"], "null"]


def typed_chars(vocab: str) -> str:
    """The characters a request may type for this vocabulary: a lower-case model also reads capitals."""
    chars = vocab.replace(".", "")
    if vocab != vocab.lower():
        return chars
    return chars + "".join(u for c in chars if len(u := c.upper()) == 1 and u != c and u.lower() == c)


def with_limits(doc: dict, settings: Settings, engine) -> dict:
    chars = engine.vocab.replace(".", "") if engine is not None else None
    typed = typed_chars(engine.vocab) if engine is not None else None

    def generate_field(name: str, schema: dict, nullable: bool) -> None:
        flatten_optional(schema, nullable)
        if name == "count":
            schema["maximum"] = settings.max_count
        elif name in ("max_length", "min_length"):
            schema["maximum"] = settings.max_length
        elif name == "top_k" and engine is not None:
            schema["maximum"] = engine.vocab_size
        elif name in ("prefix", "suffix", "contains"):
            schema["maxLength"] = settings.max_length - (name == "prefix")
            if typed is not None:
                schema["pattern"] = vocab_pattern(typed)
        elif name == "exclude" and not nullable:  # a query's list is one comma-separated text
            schema.clear()
            schema.update({"type": "string", "description": "names never to return, comma-separated"})

    def names_field(schema: dict) -> None:
        schema["maxItems"] = settings.max_score_names
        items = schema.setdefault("items", {"type": "string"})
        items["maxLength"] = settings.max_length
        if chars is not None:
            items["pattern"] = vocab_pattern(chars)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                if {"count", "max_length", "prefix", "top_k"} <= props.keys():
                    for name, schema in props.items():
                        generate_field(name, schema, nullable=True)
                if props.get("names", {}).get("type") == "array":
                    names_field(props["names"])
            if node.get("in") == "query" and isinstance(node.get("schema"), dict):
                generate_field(node.get("name", ""), node["schema"], nullable=False)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(doc)
    error = {"$ref": "#/components/schemas/ErrorResponse"} \
        if "ErrorResponse" in doc.get("components", {}).get("schemas", {}) else {"type": "object"}
    for methods in doc.get("paths", {}).values():  # what the middleware answers before any route
        if "post" in methods:
            responses = methods["post"].setdefault("responses", {})
            for code, why in BODY_ERRORS.items():
                responses.setdefault(code, {"description": why, "content": {"application/json": {"schema": error}}})
    metrics = doc.get("paths", {}).get("/metrics", {}).get("get")
    if metrics is not None:
        metrics.setdefault("responses", {}).setdefault("200", {})["content"] = METRICS_CONTENT
    if auth.tokens_wanted(settings):
        auth.describe(doc)
    return doc
