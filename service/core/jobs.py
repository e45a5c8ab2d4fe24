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
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from service.core import sampler
from service.core.constraints import ATTEMPTS_PER_NAME, ORDER, SECONDS, Constraints, shaped
from service.core.engine import Engine

SCALAR_MAX = 4  # a generation of up to this many names with the batch to itself runs one name at a time
ROUND_MAX = 1024  # streams a constrained request draws per round at most: its share of a step
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
    attempts: int  # streams judged (> requested only with constraints)
    refused: dict[str, int] = field(default_factory=dict)  # constraint -> attempts it refused
    per_name: int = 0  # attempts in a row a name's search may make
    timed_out: bool = False  # the time budget ended the search
    seconds: float | None = None  # the time budget

    @property
    def exhausted(self) -> bool:
        """True when fewer names than requested were found (the constraints' budget ran out)."""
        return len(self.names) < self.requested

    @property
    def refused_most(self) -> str | None:
        """The constraint that refused the most attempts (the first in ORDER on a tie)."""
        return max(sorted(self.refused, key=ORDER.index), key=self.refused.__getitem__, default=None)

    def note(self) -> str | None:
        """Why an exhausted answer is short, in words; None when it is not."""
        if not self.exhausted:
            return None
        why = (f"the time budget ({self.seconds:g} s) ran out after {self.attempts} attempts" if self.timed_out
               else f"{self.per_name} attempts in a row were refused ({self.attempts} attempts in all)")
        most = self.refused_most
        refused = f"; {most} refused {self.refused[most]} of them" if most else ""
        return f"found {len(self.names)} of {self.requested} names: {why}{refused}"


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
    """One /generate request: rounds of names until `count` are kept (one round without constraints).
    Each round's names are judged in stream order and the first `count` that pass are kept, so
    count=k keeps the first k names count=n keeps."""

    kind: Literal["generate"] = "generate"

    def __init__(self, engine: Engine, count: int, seed: int, temperature: float = 1.0,
                 top_k: int | None = None, prefix: str = "", max_length: int = 32,
                 novel_only: bool = False, per_name: int = ATTEMPTS_PER_NAME,
                 constraints: Constraints | None = None, case: str = "lower", seconds: float | None = SECONDS):
        if '.' in prefix or len(prefix) >= max_length:
            raise ValueError("prefix must not contain '.' and must be shorter than max_length")
        self.prefix_ids = engine.encode(prefix)
        self.id = next(_job_ids)
        self.engine, self.count, self.seed, self.prefix = engine, count, seed, prefix
        self.temperature = temperature
        self.top_k = None if top_k is not None and top_k >= engine.vocab_size else top_k
        self.steps = max_length - len(prefix)
        self.constraints = constraints or Constraints()
        if novel_only:
            self.constraints = replace(self.constraints, novel_only=True)
        self.filtered = self.constraints.active
        self.per_name = per_name  # attempts in a row without a kept name before the search gives up
        self.case, self.seconds, self.deadline = case, seconds, math.inf
        self.weight = count  # what the job costs the in-flight budget: names requested
        self.small = count <= SCALAR_MAX and not self.filtered
        self.start = 0  # streams started
        self.judged = 0  # streams judged against the constraints (a prefix of those started)
        self.gap = 0  # streams judged since the last kept name
        self.refused: dict[str, int] = {}
        self.kept: set[str] = set()
        self.timed_out = False
        self.names: list[str] = []
        self.logprobs: list[float] = []
        self.novel: list[bool] = []
        self.cut: list[bool] = []
        self.base: float | None = None
        self.round: Round | None = None
        self.done = count <= 0
        self.error: BaseException | None = None
        self.future: asyncio.Future | None = None

    def next_round(self) -> Round:
        if self.base is None:
            self.base = self.engine.prefix_logprob(self.prefix_ids)
            if self.seconds is not None:
                self.deadline = time.monotonic() + self.seconds
        need = self.count - len(self.names)
        n = need
        if self.filtered:  # enough streams for what is missing at the acceptance seen so far
            guess = max(2 * need, 8) if not self.judged else \
                math.ceil(1.2 * need * (self.judged + 1) / (len(self.names) + 1))
            n = min(ROUND_MAX, guess)
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
        if not self.filtered:
            self.names, self.logprobs, self.cut = names, logprobs, cut
            self.novel = [name not in corpus for name in names]
            self.done = True
            return
        judge, refused, kept = self.constraints.refusals, self.refused, self.kept
        for name, logprob, was_cut in zip(names, logprobs, cut):
            if len(self.names) >= self.count or self.gap >= self.per_name:
                break  # later streams are never judged: count=k stops where count=n passes its k-th name
            self.judged += 1
            self.gap += 1
            failed = judge(name, corpus, kept)
            for c in failed:
                refused[c] = refused.get(c, 0) + 1
            if failed:
                continue
            self.gap = 0
            kept.add(name)
            self.names.append(name)
            self.logprobs.append(logprob)
            self.cut.append(was_cut)
            self.novel.append(name not in corpus)
        self.timed_out = len(self.names) < self.count and self.gap < self.per_name and time.monotonic() >= self.deadline
        self.done = len(self.names) >= self.count or self.gap >= self.per_name or self.timed_out

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
        names = self.names if self.case == "lower" else [shaped(n, self.case) for n in self.names]
        return Generation(names, self.logprobs, self.novel, self.cut, requested=self.count,
                          attempts=self.judged if self.filtered else self.start, refused=dict(self.refused),
                          per_name=self.per_name, timed_out=self.timed_out, seconds=self.seconds)


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
