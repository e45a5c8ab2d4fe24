"""Every answer's JSON, written here and nowhere else: the bodies of /generate and /score (as text,
cheaper than json.dumps over a dict per name), the dicts of /readyz and /model, and the error shape
{"detail": [{"field", "message", ...}]} (as a dict for the app's handlers and as bytes for the
connection-level refusals)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from weakref import WeakKeyDictionary

from service.core.engine import Engine
from service.core.jobs import Generation, ScoreJob

SCORE_PIECE = 50  # /score names per piece of the streamed answer: bounds the answer text that exists at once
JSON_BOOL = {True: "true", False: "false"}
ALIVE = {"status": "ok"}  # /healthz
ALIVE_BYTES = json.dumps(ALIVE, separators=(",", ":")).encode()


class EngineText:
    """What every answer of one engine repeats, written once per engine."""

    def __init__(self, engine: Engine):
        self.chars = [json.dumps(c) for c in engine.vocab]  # each character as JSON text
        self.escaped = any(j != f'"{c}"' for c, j in zip(engine.vocab, self.chars))
        self.model = f'{{"name":{json.dumps(engine.name)},"version":{json.dumps(engine.version)}}}'


_texts: WeakKeyDictionary[Engine, EngineText] = WeakKeyDictionary()  # an engine's text lives while it does


def engine_text(engine: Engine) -> EngineText:
    text = _texts.get(engine)
    if text is None:
        text = _texts[engine] = EngineText(engine)
    return text


def error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"detail": [{"field": field, "message": message}]}


def invalid(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A 422's body from pydantic's (or our parsing's) error items: each names the field and the reason."""
    items = []
    for e in errors:
        loc = list(e.get("loc", ()))
        field = "body" if e.get("type") == "json_invalid" else _field(loc)
        items.append({"field": field, "message": e.get("msg", "invalid"), "loc": loc, "type": e.get("type")})
    return {"detail": items}


def _field(loc: list) -> str | None:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "header") else \
        [str(p) for p in loc]
    if not parts:
        return "body" if loc and loc[0] == "body" else None
    return ".".join(parts)


def error_bytes(message: str) -> bytes:
    return json.dumps(error(message)).encode()


def generated(engine: Engine, seed: int, gen: Generation) -> str:
    """The /generate answer (floats repr the same way json.dumps writes them)."""
    text = engine_text(engine)
    quote = json.dumps if text.escaped else (lambda name: f'"{name}"')
    per_char, pct = engine.typicality(gen.logprobs, [len(n) + (not c) for n, c in zip(gen.names, gen.cut)])
    pct = [percent(p) for p in pct] if pct is not None else ["null"] * len(per_char)
    items = ",".join([f'{{"name":{quote(n)},"logprob":{lp!r},"logprob_per_char":{pc!r},"percentile":{p},'
                      f'"novel":{JSON_BOOL[nv]},"cut":{JSON_BOOL[c]}}}'
                      for n, lp, pc, p, nv, c in zip(gen.names, gen.logprobs, per_char, pct, gen.novel, gen.cut)])
    note = gen.note()
    return (f'{{"model":{text.model},"seed":{seed},"requested":{gen.requested},'
            f'"exhausted":{JSON_BOOL[gen.exhausted]},"attempts":{gen.attempts},'
            f'"refused":{json.dumps(gen.refused) if gen.refused else "{}"},'
            f'"note":{"null" if note is None else json.dumps(note)},"names":[{items}]}}')


def percent(value: float) -> str:
    """A percentile as JSON, to a tenth of a point (its accuracy is a point)."""
    return repr(round(value, 1))


def scored(job: ScoreJob, per_char: bool) -> Iterator[bytes]:
    """The /score answer in pieces of SCORE_PIECE names, for streaming: the whole answer and its
    intermediates never exist at once. Written directly: for the largest request a dict per
    character would cost more memory than everything else together."""
    text = engine_text(job.engine)
    corpus, chars, names = job.engine.corpus, text.chars, job.names
    yield f'{{"model":{text.model},"scores":'.encode()
    if not names:
        yield b"[]"
    for first in range(0, len(names), SCORE_PIECE):
        last = min(first + SCORE_PIECE, len(names))
        parts = []
        totals = job.totals(first, last)
        typical, pct = job.engine.typicality(totals, [len(names[i]) + 1 for i in range(first, last)])
        pct = [percent(p) for p in pct] if pct is not None else ["null"] * len(totals)
        for i, total, pc, p in zip(range(first, last), totals, typical, pct):
            name = names[i]
            item = (f'{{"name":{json.dumps(name)},"logprob":{json.dumps(total)},'
                    f'"logprob_per_char":{json.dumps(pc)},"percentile":{p},'
                    f'"in_corpus":{JSON_BOOL[name in corpus]}')
            if per_char:
                lo, hi = int(job.offsets[i]), int(job.offsets[i + 1])
                item += ',"per_char":[' + ",".join(
                    f'{{"char":{chars[t]},"logprob":{json.dumps(v)}}}'
                    for t, v in zip(job.targets[lo:hi].tolist(), job.picked[lo:hi].tolist())) + "]"
            parts.append(item + "}")
        yield (("[" if first == 0 else ",") + ",".join(parts) + ("]" if last == len(names) else "")).encode()
    yield b"}"


def reload_state(state) -> dict[str, Any]:
    """A refused version and its reason code (null when none): what clients may know of a reload."""
    return {"refused": state.refused_version, "reason": state.reason}


def not_ready(state) -> dict[str, Any]:
    """A reason code and the version tried; the details are in the log."""
    reason = state.reason or "loading"
    return {**error(f"not ready: {reason}"), "reason": reason, "version": state.refused_version}


def ready(state) -> dict[str, Any]:
    engine = state.engine
    return {"status": "ready", "model": {"name": engine.name, "version": engine.version},
            "reload": reload_state(state)}


def model_summary(engine: Engine, state) -> dict[str, Any]:
    """The served model's manifest summary (/model)."""
    m = engine.model.manifest
    arch = dict(m.architecture)
    return {
        "name": m.name, "version": m.version, "created": m.created,
        "vocab": m.vocab, "vocab_size": len(m.vocab), "block_size": m.block_size,
        "parameters": {k: v for k, v in arch.items() if "param" in k},
        "architecture": arch, "metrics": m.metrics, "health": m.health, "corpus": m.corpus,
        "reload": reload_state(state),
    }
