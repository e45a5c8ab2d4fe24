"""Requests as jobs for the scheduler, and what they give back.

A `GenerateJob` is one or more rounds of names (streams start, start+1, ... of its seed) that the
scheduler's lanes step together with every other job's names; a `ScoreJob` is the rows of its
names' contexts, taken a chunk per step; an `InferJob` is a client's own contexts, whose raw logits
the inference protocol answers (one model call per step for every such job of a version). A name's result depends only on (seed, stream index,
parameters), never on what was generated with it. The `Job` protocols list everything the
scheduler uses of a job.
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from service.core import sampler
from service.core.engine import Engine

SCALAR_MAX = 4  # a generation of up to this many names with the batch to itself runs one name at a time
NOVEL_FACTOR = 20  # novel_only tries at most this many streams per requested name
SCORE_CHUNK = 256  # /score rows (characters, ends included) per step: bounds a request's memory

_job_ids = itertools.count(1)


@dataclass(frozen=True)
class Generation:
    """Names in stream order with their log-probability, novelty and truncation flags."""

    names: list[str]
    logprobs: list[float]
    novel: list[bool]
    cut: list[bool]
    requested: int
    attempts: int  # streams sampled (> requested only with novel_only)

    @property
    def exhausted(self) -> bool:
        """True when fewer names than requested were found (novel_only ran out of attempts)."""
        return len(self.names) < self.requested


@dataclass(frozen=True)
class Score:
    name: str
    logprob: float  # sum of per_char
    per_char: list[tuple[str, float]]  # each character of the name, then '.' (the end)
    in_corpus: bool


@dataclass(frozen=True)
class Round:
    """Names that join a lane together: streams of one seed, same start and parameters."""

    n: int
    skeys: np.ndarray  # (n,) uint64 stream keys
    start_key: int  # context key after the prefix
    base: float  # the prefix's log-probability
    steps: int  # characters each may draw (max_length - len(prefix))
    temperature: float
    top_k: int  # 0: none


class Job(Protocol):
    """What the scheduler uses of any job (GenerateJob and ScoreJob are the two kinds)."""

    kind: Literal["generate", "score", "infer"]
    id: int
    engine: Engine  # the model version it runs on: one lane per engine
    weight: int  # names it holds while it runs (the step's room and the gate count these)
    small: bool  # may run alone, one name at a time, when the batch is otherwise empty
    done: bool
    error: BaseException | None
    future: asyncio.Future | None  # the caller's, while it waits on the scheduler

    def run_alone(self) -> None: ...
    def fail(self, error: BaseException) -> None: ...
    def outcome(self) -> Any: ...


class RoundsJob(Job, Protocol):
    """A "generate" job: joins a lane as rounds of names (`next_round`), each round handed back
    whole (`round_done`)."""

    round: Round | None  # the round in the lane
    temperature: float
    top_k: int | None

    def next_round(self) -> Round: ...
    def round_done(self, names: list[str], logprobs: list[float], cut: list[bool]) -> None: ...


class ChunksJob(Job, Protocol):
    """A "score" job: one chunk of context keys per step (`chunk`), taking their rows' values (`take`)."""

    def chunk(self) -> tuple[np.ndarray, np.ndarray]: ...
    def take(self, values: np.ndarray) -> None: ...


class GenerateJob:
    """One /generate request: rounds of names until `count` are found (one round unless novel_only)."""

    kind: Literal["generate"] = "generate"

    def __init__(self, engine: Engine, count: int, seed: int, temperature: float = 1.0,
                 top_k: int | None = None, prefix: str = "", max_length: int = 32,
                 novel_only: bool = False, max_attempts: int | None = None):
        if '.' in prefix or len(prefix) >= max_length:
            raise ValueError("prefix must not contain '.' and must be shorter than max_length")
        self.prefix_ids = engine.encode(prefix)
        self.id = next(_job_ids)
        self.engine, self.count, self.seed, self.prefix = engine, count, seed, prefix
        self.temperature = temperature
        self.top_k = None if top_k is not None and top_k >= engine.vocab_size else top_k
        self.steps = max_length - len(prefix)
        self.novel_only = novel_only
        self.limit = count if not novel_only else (max_attempts or NOVEL_FACTOR * count)
        self.weight = count  # what the job costs the in-flight budget: names requested
        self.small = count <= SCALAR_MAX and not novel_only
        self.start = 0  # streams started
        self.names: list[str] = []
        self.logprobs: list[float] = []
        self.novel: list[bool] = []
        self.cut: list[bool] = []
        self.base: float | None = None
        self.round: Round | None = None
        self.done = count <= 0 or self.limit <= 0
        self.error: BaseException | None = None
        self.future: asyncio.Future | None = None

    def next_round(self) -> Round:
        if self.base is None:
            self.base = self.engine.prefix_logprob(self.prefix_ids)
        need = self.count - len(self.names)
        n = need if not self.novel_only else min(self.limit - self.start, max(2 * need, 8))
        if n == 1:
            skeys = np.array([sampler.stream_key(self.seed, self.start)], dtype=np.uint64)
        else:
            skeys = sampler.stream_keys(self.seed, np.arange(self.start, self.start + n, dtype=np.uint64))
        self.round = Round(n, skeys, self.engine.start_key(self.prefix_ids), self.base, self.steps,
                           self.temperature, self.top_k or 0)
        self.start += n
        return self.round

    def round_done(self, names: list[str], logprobs: list[float], cut: list[bool]) -> None:
        """The round's names in stream order (without the prefix)."""
        if self.prefix:
            names = [self.prefix + name for name in names]
        corpus = self.engine.corpus
        if not self.novel_only:
            self.names, self.logprobs, self.cut = names, logprobs, cut
            self.novel = [name not in corpus for name in names]
            self.done = True
            return
        keep = [i for i, name in enumerate(names) if name not in corpus][:self.count - len(self.names)]
        self.names += [names[i] for i in keep]
        self.logprobs += [logprobs[i] for i in keep]
        self.cut += [cut[i] for i in keep]
        self.novel += [True] * len(keep)
        self.done = len(self.names) >= self.count or self.start >= self.limit

    def run_alone(self) -> None:
        """Every round one name at a time (a small job with the batch to itself)."""
        engine = self.engine
        while not self.done:
            r = self.next_round()
            names, logprobs, cut = [], [], []
            for index in range(self.start - r.n, self.start):
                chars, logps = engine.walk(r.start_key, r.steps, sampler.stream_key(self.seed, index),
                                           self.temperature, self.top_k)
                total = r.base
                for lp in logps:
                    total += lp
                ended = bool(chars) and chars[-1] == 0
                names.append("".join(engine.vocab[c] for c in (chars[:-1] if ended else chars)))
                logprobs.append(total)
                cut.append(not ended)
            self.round_done(names, logprobs, cut)

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def outcome(self) -> Generation:
        if self.error is not None:
            raise self.error
        return Generation(self.names, self.logprobs, self.novel, self.cut, requested=self.count,
                          attempts=self.start)


class ScoreJob:
    """One /score request: the rows of every name's contexts (each character, then the end),
    looked up SCORE_CHUNK rows per step, so its memory is bounded whatever the request. A job holds
    three numbers per row (the character it predicts, its value, and the name offsets); each chunk's
    context keys are made when the chunk is stepped, never (rows, block_size) at once."""

    kind: Literal["score"] = "score"
    small = False

    def __init__(self, engine: Engine, names: list[str]):
        self.id = next(_job_ids)
        self.engine, self.names = engine, names
        text, stoi = "".join(n + "." for n in names), engine.stoi
        # (rows,) the character each row predicts, in the smallest type that holds the vocabulary
        self.targets = np.fromiter(map(stoi.__getitem__, text), np.min_scalar_type(len(stoi) - 1), len(text))
        rows_per_name = np.array([len(n) + 1 for n in names], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(rows_per_name)])  # name i: rows offsets[i]:offsets[i+1]
        self.picked = np.empty(len(self.targets))  # (rows,) log-probability of each target
        self.pos = 0
        self.weight = len(names)
        self.done = False
        self.error: BaseException | None = None
        self.future: asyncio.Future | None = None

    def chunk(self) -> tuple[np.ndarray, np.ndarray]:
        """The next SCORE_CHUNK rows: (context keys, targets). A row's context is the block_size
        characters of its name before it ('.' = 0 before the name's start), which are the targets
        of the rows just before it in the same name: its key adds them, the nearest one last."""
        lo, hi = self.pos, min(self.pos + SCORE_CHUNK, len(self.targets))
        rows = np.arange(lo, hi)  # (n,)
        depth = rows - self.offsets[np.searchsorted(self.offsets, rows, side="right") - 1]  # (n,) row in its name
        keys = np.zeros(hi - lo, dtype=np.int64)  # (n,)
        powers = self.engine.rows.powers  # (block_size,) vocab ** (block_size - 1 ... 0)
        for back in range(1, min(len(powers), int(depth.max(initial=0))) + 1):
            keys += np.where(depth >= back, self.targets[np.maximum(rows - back, 0)], 0) * powers[-back]
        return keys, self.targets[lo:hi]

    def take(self, values: np.ndarray) -> None:
        self.picked[self.pos:self.pos + len(values)] = values
        self.pos += len(values)
        self.done = self.pos >= len(self.targets)

    def run_alone(self) -> None:
        rows = self.engine.rows
        while not self.done:
            keys, targets = self.chunk()
            logp, _, found = rows.lookup(keys)
            self.take(logp[found, targets])

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def outcome(self) -> ScoreJob:
        if self.error is not None:
            raise self.error
        return self

    def totals(self, first: int = 0, last: int | None = None) -> list[float]:
        """The sums of names first:last, each added left to right: a row of a table as wide as the
        request's longest name (the zero padding after a name's end adds nothing)."""
        last = len(self.names) if last is None else last
        width = int(np.diff(self.offsets).max())
        lo, hi = int(self.offsets[first]), int(self.offsets[last])
        lengths = np.diff(self.offsets[first:last + 1])
        table = np.zeros((last - first, width))  # (names, width)
        table[np.repeat(np.arange(last - first), lengths),
              np.arange(hi - lo) - np.repeat(self.offsets[first:last] - lo, lengths)] = self.picked[lo:hi]
        return np.cumsum(table, axis=1)[:, -1].tolist()

    def scores(self) -> list[Score]:
        corpus, picked = self.engine.corpus, self.picked.tolist()
        out = []
        for i, (name, total) in enumerate(zip(self.names, self.totals())):
            values = picked[self.offsets[i]:self.offsets[i + 1]]
            out.append(Score(name, total, list(zip(name + ".", values)), name in corpus))
        return out


class InferJob:
    """One inference-protocol request: the graph's float32 logits for the client's contexts, run in
    the step's one call for all such jobs of the same version."""

    kind: Literal["infer"] = "infer"
    small = True  # alone in the batch it runs at once: the same one call

    def __init__(self, engine: Engine, contexts: np.ndarray):
        self.id = next(_job_ids)
        self.engine = engine
        self.contexts = contexts  # (n, block_size) int64 character ids
        self.logits: np.ndarray | None = None  # (n, V) float32, once run
        self.weight = len(contexts)
        self.done = False
        self.error: BaseException | None = None
        self.future: asyncio.Future | None = None

    def run_alone(self) -> None:
        self.take(self.engine.rows.logits(self.contexts))

    def take(self, logits: np.ndarray) -> None:
        self.logits, self.done = logits, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def outcome(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return self.logits
