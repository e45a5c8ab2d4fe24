"""Generation and scoring semantics over a model runtime. No HTTP here.

The model maps a context (block_size previous character ids, '.'=0 pads the start) to logits over
the vocabulary; `cache.ModelRows` turns those into float64 log-probabilities and CDFs behind an
exact cache. A request becomes a job: a `GenerateJob` is one or more rounds of names (streams
start, start+1, ... of its seed) that `scheduler.Lane` steps together with every other job's names;
a `ScoreJob` is the rows of its names' contexts, taken a chunk per step. A name's result depends
only on (seed, stream index, parameters), never on what was generated with it.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from artifact.loader import LoadedModel
from service import sampling
from service.cache import ModelRows
from service.runtime import OnnxRuntime, Runtime
from service.scheduler import Batch

SCALAR_MAX = 4  # a generation of up to this many names with the batch to itself runs one name at a time
NOVEL_FACTOR = 20  # novel_only tries at most this many streams per requested name
SCORE_CHUNK = 256  # /score rows (characters, ends included) per step: bounds a request's memory
SCORE_PIECE = 50  # /score names per piece of the streamed answer: bounds the answer text that exists at once

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


class Engine:
    """Sampling and scoring for one loaded model version."""

    def __init__(self, model: LoadedModel, cache_rows: int = 8192, runtime: Runtime | None = None):
        self.model = model
        self.name: str = model.name
        self.version: str = model.version
        self.corpus: frozenset[str] = model.corpus_names
        runtime = runtime if runtime is not None else OnnxRuntime(model)
        self.vocab: str = runtime.vocab
        self.block_size: int = int(runtime.block_size)
        self.vocab_size = len(self.vocab)
        self.stoi = {c: i for i, c in enumerate(self.vocab)}
        self.codepoints = np.array([ord(c) for c in self.vocab], dtype=np.uint32)
        self.rows = ModelRows(runtime, cache_rows)
        self._tail = self.vocab_size ** (self.block_size - 1)
        self.json_chars = [json.dumps(c) for c in self.vocab]  # each character as JSON text
        self.json_chars_escaped = any(j != f'"{c}"' for c, j in zip(self.vocab, self.json_chars))
        # The "model" object of every answer, written once.
        self.json_model = f'{{"name":{json.dumps(self.name)},"version":{json.dumps(self.version)}}}'

    def warm(self, max_rows: int | None = None) -> int:
        """Cache the contexts every name starts from (see ModelRows.warm)."""
        return self.rows.warm(max_rows)

    def encode(self, text: str) -> list[int]:
        """Character ids of a name or prefix; KeyError on a character outside the vocabulary."""
        return [self.stoi[c] for c in text]

    def start_key(self, ids: list[int]) -> int:
        """The context key after these characters ('.' padding before them)."""
        key = 0
        for c in ids[-self.block_size:]:
            key = key * self.vocab_size + c
        return key

    def prefix_logprob(self, ids: list[int]) -> float:
        """Log-probability of the prefix's characters, summed left to right."""
        total = 0.0
        if ids:
            padded = np.array([0] * self.block_size + ids, dtype=np.int64)
            contexts = np.lib.stride_tricks.sliding_window_view(padded, self.block_size)[:len(ids)]
            for v in self.rows.logp_rows(contexts)[np.arange(len(ids)), ids].tolist():
                total += v
        return total

    # ---- the synchronous API (tests, benchmarks, the self-test): a batch of one job -------------

    def generate(self, count: int, seed: int, temperature: float = 1.0, top_k: int | None = None,
                 prefix: str = "", max_length: int = 32, novel_only: bool = False,
                 max_attempts: int | None = None) -> Generation:
        """`count` names from streams 0, 1, 2, ... of `seed`. With novel_only, names found in the
        training corpus are skipped and later streams are tried, at most max_attempts streams in
        all (default 20 * count); the result may then hold fewer names than requested."""
        job = GenerateJob(self, count, seed, temperature, top_k, prefix, max_length, novel_only, max_attempts)
        return Batch().run(job)

    def score(self, names: list[str]) -> list[Score]:
        """Per name: log-probability of each character and of the end '.', their sum, and whether
        the name is in the training corpus."""
        if not names:
            return []
        job = ScoreJob(self, names)
        job.run_alone()
        return job.scores()

    # ---- one name at a time -----------------------------------------------------------------------

    def walk(self, key: int, steps: int, stream: int, temperature: float, top_k: int | None
             ) -> tuple[list[int], list[float]]:
        """Draw one name's characters with stream key `stream`: the character ids drawn, the end (0)
        included if reached, and their log-probabilities. Plain Python over flat views of the cache
        tables: for a lone small request, cheaper than numpy calls on tiny arrays (the same
        arithmetic as the lanes' vectorised step; the tests check both against a reference loop)."""
        uniform, choose_one, rows = sampling.uniform, sampling.choose_one, self.rows
        V, tail = self.vocab_size, self._tail
        default = temperature == 1.0 and top_k is None
        chars: list[int] = []
        logps: list[float] = []
        for s in range(steps):
            cache = rows.cache
            row = cache.row(key) if cache is not None else None
            if row is None:
                logp_t, cdf_t, found = rows.lookup(np.array([key], dtype=np.int64))
                flat_logp, flat_cdf, lo = memoryview(logp_t[found[0]]), memoryview(cdf_t[found[0]]), 0
            else:
                flat_logp, flat_cdf, lo = cache.flat_logp, cache.flat_cdf, row * V
            lo_cdf = lo
            if not default:
                logp_row = np.asarray(flat_logp[lo:lo + V])
                flat_cdf, lo_cdf = memoryview(sampling.cdf_rows(logp_row[None, :], temperature, top_k)[0]), 0
            c = choose_one(flat_cdf, uniform(stream, s), lo_cdf, V)
            chars.append(c)
            logps.append(flat_logp[lo + c])
            if c == 0:
                break
            key = key % tail * V + c
        return chars, logps


class GenerateJob:
    """One /generate request: rounds of names until `count` are found (one round unless novel_only)."""

    kind = "generate"

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
        self.future = None

    def next_round(self) -> Round:
        if self.base is None:
            self.base = self.engine.prefix_logprob(self.prefix_ids)
        need = self.count - len(self.names)
        n = need if not self.novel_only else min(self.limit - self.start, max(2 * need, 8))
        if n == 1:
            skeys = np.array([sampling.stream_key(self.seed, self.start)], dtype=np.uint64)
        else:
            skeys = sampling.stream_keys(self.seed, np.arange(self.start, self.start + n, dtype=np.uint64))
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
                chars, logps = engine.walk(r.start_key, r.steps, sampling.stream_key(self.seed, index),
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

    kind = "score"
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
        self.future = None

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

    def json_pieces(self, per_char: bool) -> Iterator[str]:
        """The response's "scores" list as JSON text in pieces of SCORE_PIECE names, for streaming:
        the whole answer and its intermediates never exist at once. Written directly: for the
        largest request a dict per character would cost more memory than everything else together."""
        corpus, chars = self.engine.corpus, self.engine.json_chars
        if not self.names:
            yield "[]"
            return
        for first in range(0, len(self.names), SCORE_PIECE):
            last = min(first + SCORE_PIECE, len(self.names))
            parts = []
            for i, total in zip(range(first, last), self.totals(first, last)):
                name = self.names[i]
                item = (f'{{"name":{json.dumps(name)},"logprob":{json.dumps(total)},'
                        f'"in_corpus":{"true" if name in corpus else "false"}')
                if per_char:
                    lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
                    item += ',"per_char":[' + ",".join(
                        f'{{"char":{chars[t]},"logprob":{json.dumps(v)}}}'
                        for t, v in zip(self.targets[lo:hi].tolist(), self.picked[lo:hi].tolist())) + "]"
                parts.append(item + "}")
            yield ("[" if first == 0 else ",") + ",".join(parts) + ("]" if last == len(self.names) else "")
