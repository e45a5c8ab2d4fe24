"""Generation and scoring over a loaded ONNX artifact. No HTTP here.

The model maps a context (block_size previous character ids, '.'=0 pads the start) to logits over
the vocabulary. The engine turns those into float64 log-probabilities (log-softmax) and CDFs and
keeps them in an exact, bounded cache keyed by the context (a dense table when every context fits,
else a dictionary), so a context seen before costs a lookup instead of a model call.

Generation runs all still-active names of a request in lock step: one model call per step on the
contexts the cache does not hold, then one vectorised draw per name from that name's own random
stream (see `sampling`). A name's result therefore depends only on (seed, stream index, parameters),
never on how many names were generated with it.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from service import sampling

_RUN_CHUNK = 4096  # rows per model call when filling the cache
_SCALAR_MAX = 4  # batches up to this size are sampled one name at a time
_TAIL = 12  # a batch finishes its last few names one at a time
_WARM_CHUNK = 1024  # contexts per model call while warming the cache


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


def _flat(table: np.ndarray) -> memoryview:
    """A flat view of a float64 table whose items index as Python floats (the one-name loop reads
    single numbers; a memoryview hands them out several times faster than numpy indexing)."""
    return memoryview(table.reshape(-1))


class ContextCache:
    """context key -> row of log-probabilities and of the temperature-1 CDF, for at most
    `capacity` contexts. Rows are written once and never changed, so readers need no lock."""

    def __init__(self, capacity: int, vocab_size: int):
        self.capacity = capacity
        self.slots: dict[int, int] = {}
        self.logp = np.empty((capacity, vocab_size), dtype=np.float64)
        self.cdf = np.empty((capacity, vocab_size), dtype=np.float64)
        self.flat_logp, self.flat_cdf = _flat(self.logp), _flat(self.cdf)
        self.size = 0

    def row(self, key: int) -> int | None:
        return self.slots.get(key)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(row index per key, mask of keys not cached or None when all are)."""
        get = self.slots.get
        index = np.array([get(k, -1) for k in keys.tolist()], dtype=np.int64)
        miss = index < 0
        return index, (miss if miss.any() else None)

    def insert(self, keys: list[int], logp: np.ndarray, cdf: np.ndarray) -> bool:
        """Store rows for new keys (caller holds the engine's lock); False when there is no room."""
        fresh = [i for i, k in enumerate(keys) if k not in self.slots]
        end = self.size + len(fresh)
        if end > self.capacity:
            return False
        self.logp[self.size:end] = logp[fresh]
        self.cdf[self.size:end] = cdf[fresh]
        for i, row in zip(fresh, range(self.size, end)):
            self.slots[keys[i]] = row
        self.size = end
        return True


class DenseCache:
    """The same for a context space small enough to hold whole (vocab ** block_size rows, e.g.
    19,683 for 27 characters and 3 positions): the key is the row, so lookups are one numpy op."""

    def __init__(self, contexts: int, vocab_size: int):
        self.filled = np.zeros(contexts, dtype=bool)
        self.logp = np.empty((contexts, vocab_size), dtype=np.float64)
        self.cdf = np.empty((contexts, vocab_size), dtype=np.float64)
        self.flat_logp, self.flat_cdf = _flat(self.logp), _flat(self.cdf)
        self._filled = memoryview(self.filled)

    def row(self, key: int) -> int | None:
        return key if self._filled[key] else None

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        miss = ~self.filled[keys]
        return keys, (miss if miss.any() else None)

    def insert(self, keys: list[int], logp: np.ndarray, cdf: np.ndarray) -> bool:
        self.logp[keys] = logp
        self.cdf[keys] = cdf
        self.filled[keys] = True  # after the rows: a reader that sees True reads finished rows
        return True


class Engine:
    """Sampling and scoring for one loaded model version (anything shaped like
    artifact.loader.LoadedModel: session, vocab, block_size, corpus_names, name, version)."""

    def __init__(self, model: Any, cache_rows: int = 8192):
        self.model = model
        self.name: str = model.name
        self.version: str = model.version
        self.vocab: str = model.vocab
        self.block_size: int = int(model.block_size)
        self.corpus: frozenset[str] = model.corpus_names
        self.session = model.session
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.vocab_size = len(self.vocab)
        self.stoi = {c: i for i, c in enumerate(self.vocab)}
        self._codepoints = np.array([ord(c) for c in self.vocab], dtype=np.uint32)
        self._powers = self.vocab_size ** np.arange(self.block_size - 1, -1, -1, dtype=np.int64)
        if self.vocab_size ** self.block_size >= 2 ** 63:
            raise ValueError(f"vocab {self.vocab_size} ** block_size {self.block_size} does not fit "
                             "the engine's 63-bit context keys")
        self._cache_rows = cache_rows
        self._lock = threading.Lock()
        self._cache = self._new_cache()

    def _new_cache(self) -> ContextCache | DenseCache | None:
        contexts = self.vocab_size ** self.block_size
        if not self._cache_rows:
            return None
        if contexts <= self._cache_rows:
            return DenseCache(contexts, self.vocab_size)
        return ContextCache(self._cache_rows, self.vocab_size)

    # ---- log-probabilities -------------------------------------------------------------------

    def _run(self, contexts: np.ndarray) -> np.ndarray:
        """Model call: (n, block_size) int64 -> (n, vocab) float64 log-probabilities."""
        parts = []
        for start in range(0, len(contexts), _RUN_CHUNK):
            chunk = np.ascontiguousarray(contexts[start:start + _RUN_CHUNK], dtype=np.int64)
            parts.append(self.session.run([self.output_name], {self.input_name: chunk})[0])
        logits = np.concatenate(parts).astype(np.float64) if len(parts) > 1 else parts[0].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logits

    def _compute(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logp = self._run(contexts)
        return logp, sampling.cdf_rows(logp, 1.0, None)

    def rows(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities and temperature-1 CDFs for each context row: (n, vocab) each."""
        return self.rows_by_key(np.asarray(contexts, dtype=np.int64) @ self._powers)

    def _decode(self, keys: np.ndarray) -> np.ndarray:
        """Context keys (base-vocab numbers) -> (n, block_size) character ids."""
        return keys[:, None] // self._powers[None, :] % self.vocab_size

    def rows_by_key(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`rows` for contexts given as keys: sum(context[j] * vocab**(block_size-1-j))."""
        cache = self._cache
        if cache is None:
            unique, inverse = np.unique(keys, return_inverse=True)
            logp, cdf = self._compute(self._decode(unique))
            return logp[inverse], cdf[inverse]
        idx, miss = cache.find(keys)
        if miss is None:
            return cache.logp[idx], cache.cdf[idx]
        hit = ~miss
        logp = np.empty((len(keys), self.vocab_size))
        cdf = np.empty_like(logp)
        if hit.any():
            logp[hit] = cache.logp[idx[hit]]
            cdf[hit] = cache.cdf[idx[hit]]
        unique, inverse = np.unique(keys[miss], return_inverse=True)
        new_logp, new_cdf = self._compute(self._decode(unique))
        logp[miss] = new_logp[inverse]
        cdf[miss] = new_cdf[inverse]
        self._store(unique.tolist(), new_logp, new_cdf)
        return logp, cdf

    def tables(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log-probability table, CDF table, row of each key): the common all-cached case hands out
        the cache's own tables, so callers gather only what they need."""
        cache = self._cache
        if cache is not None:
            idx, miss = cache.find(keys)
            if miss is None:
                return cache.logp, cache.cdf, idx
        logp, cdf = self.rows_by_key(keys)
        return logp, cdf, np.arange(len(keys))

    def _store(self, keys: list[int], logp: np.ndarray, cdf: np.ndarray) -> None:
        with self._lock:
            if self._cache.insert(keys, logp, cdf):
                return
            # Full: start a fresh cache. Readers holding the old one keep reading valid rows.
            self._cache = self._new_cache()
            if len(keys) <= self._cache_rows:
                self._cache.insert(keys, logp, cdf)

    def warm(self, max_rows: int | None = None) -> int:
        """Fill the cache with the contexts every name starts from: '.'-padding followed by
        0, 1, 2, ... characters, as many whole levels as fit in max_rows (default 60% of the cache).
        Returns the number of contexts computed."""
        if self._cache is None:
            return 0
        budget = int(self._cache_rows * 0.6) if max_rows is None else max_rows
        letters = range(1, self.vocab_size)
        levels, total = [], 0
        for depth in range(self.block_size + 1):
            size = (self.vocab_size - 1) ** depth
            if total + size > budget:
                break
            levels.append(depth)
            total += size
        if not levels:
            return 0
        contexts = np.zeros((total, self.block_size), dtype=np.int64)
        row = 0
        for depth in levels:
            if depth:
                tails = np.array(list(itertools.product(letters, repeat=depth)), dtype=np.int64)
                contexts[row:row + len(tails), self.block_size - depth:] = tails
                row += len(tails)
            else:
                row += 1
        for start in range(0, total, _WARM_CHUNK):  # small pieces keep the temporaries (and RSS) small
            self.rows(contexts[start:start + _WARM_CHUNK])
        return total

    # ---- generation ----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Character ids of a name or prefix; KeyError on a character outside the vocabulary."""
        return [self.stoi[c] for c in text]

    def generate(self, count: int, seed: int, temperature: float = 1.0, top_k: int | None = None,
                 prefix: str = "", max_length: int = 32, novel_only: bool = False,
                 max_attempts: int | None = None) -> Generation:
        """`count` names from streams 0, 1, 2, ... of `seed`. With novel_only, names found in the
        training corpus are skipped and later streams are tried, at most max_attempts streams in
        all (default 20 * count); the result may then hold fewer names than requested."""
        prefix_ids = self.encode(prefix)
        if '.' in prefix or len(prefix) >= max_length:
            raise ValueError("prefix must not contain '.' and must be shorter than max_length")
        if top_k is not None and top_k >= self.vocab_size:
            top_k = None
        limit = count if not novel_only else (max_attempts or 20 * count)
        names: list[str] = []
        logprobs: list[float] = []
        novel: list[bool] = []
        cut: list[bool] = []
        start = 0
        while len(names) < count and start < limit:
            need = count - len(names)
            batch = need if not novel_only else min(limit - start, max(2 * need, 8))
            got_names, got_logprobs, got_cut = self._sample(
                seed, start, batch, temperature, top_k, prefix, prefix_ids, max_length)
            start += batch
            corpus = self.corpus
            got_novel = [name not in corpus for name in got_names]
            if not novel_only:
                names, logprobs, novel, cut = got_names, got_logprobs, got_novel, got_cut
                break
            keep = [i for i, ok in enumerate(got_novel) if ok][:need]
            names += [got_names[i] for i in keep]
            logprobs += [got_logprobs[i] for i in keep]
            novel += [True] * len(keep)
            cut += [got_cut[i] for i in keep]
        return Generation(names, logprobs, novel, cut, requested=count, attempts=start)

    def _prefix_logprob(self, prefix_ids: list[int]) -> float:
        """Log-probability of the prefix's characters, summed left to right."""
        total = 0.0
        if prefix_ids:
            logp, _ = self.rows(self._contexts(prefix_ids)[:len(prefix_ids)])
            for v in logp[np.arange(len(prefix_ids)), prefix_ids].tolist():
                total += v
        return total

    def _contexts(self, ids: list[int]) -> np.ndarray:
        """Sliding contexts over [0]*block_size + ids: row i predicts ids[i] (len(ids) + 1 rows)."""
        padded = np.array([0] * self.block_size + list(ids), dtype=np.int64)
        return np.lib.stride_tricks.sliding_window_view(padded, self.block_size)

    def _sample(self, seed: int, start: int, n: int, temperature: float, top_k: int | None,
                prefix: str, prefix_ids: list[int], max_length: int
                ) -> tuple[list[str], list[float], list[bool]]:
        """Streams start..start+n-1: (names, log-probabilities, cut flags). Small batches take a
        scalar path with the same arithmetic (tests check both against a plain reference loop)."""
        if n <= _SCALAR_MAX:
            base = self._prefix_logprob(prefix_ids)
            results = [self._sample_one(seed, i, temperature, top_k, prefix, prefix_ids, max_length, base)
                       for i in range(start, start + n)]
            names, logprobs, cut = zip(*results)
            return list(names), list(logprobs), list(cut)
        return self._sample_batch(seed, start, n, temperature, top_k, prefix, prefix_ids, max_length)

    def _start_key(self, prefix_ids: list[int]) -> int:
        key = 0
        for c in prefix_ids[-self.block_size:]:
            key = key * self.vocab_size + c
        return key

    def _sample_batch(self, seed, start, n, temperature, top_k, prefix, prefix_ids, max_length):
        steps = max_length - len(prefix_ids)
        V, tail = self.vocab_size, self.vocab_size ** (self.block_size - 1)
        # Per step rows (step-major, so each step writes one contiguous row):
        u_all = sampling.uniforms(sampling.stream_keys(seed, np.arange(start, start + n, dtype=np.uint64)), steps)
        chars = np.zeros((steps, n), dtype=np.int64)
        picked = np.zeros((steps + 1, n))  # row 0: the prefix; then each drawn character's log-prob
        picked[0] = self._prefix_logprob(prefix_ids)
        lengths = np.full(n, steps, dtype=np.int64)
        keys = np.full(n, self._start_key(prefix_ids), dtype=np.int64)
        alive = np.arange(n)
        default = temperature == 1.0 and top_k is None
        for step in range(steps):
            if len(alive) <= _TAIL and step:
                # A few long names left: finish them one by one (fewer numpy calls per step).
                for i, key in zip(alive.tolist(), keys.tolist()):
                    drawn, logps = self._walk(key, step, steps, 0, u_all[:, i], temperature, top_k)
                    chars[step:step + len(drawn), i] = drawn
                    picked[step + 1:step + 1 + len(drawn), i] = logps
                    if drawn[-1] == 0:
                        lengths[i] = step + len(drawn) - 1
                break
            logp_t, cdf_t, rows = self.tables(keys)
            if default:
                cdf = cdf_t.take(rows, axis=0)
            else:
                cdf = sampling.cdf_rows(logp_t.take(rows, axis=0), temperature, top_k)
            c = sampling.choose(cdf, u_all[step].take(alive))
            picked[step + 1, alive] = logp_t[rows, c]
            chars[step, alive] = c
            ended = c == 0
            if ended.any():
                lengths[alive[ended]] = step
                keep = ~ended
                alive, keys, c = alive[keep], keys[keep], c[keep]
                if not len(alive):
                    break
            keys = keys % tail * V + c
        # cumsum adds step by step, the same order as the one-name path's running total.
        logprob = np.cumsum(picked, axis=0)[-1]
        chars = chars.T
        # Names as one string: each name's characters then a newline (never in a vocabulary).
        codes = np.empty((n, steps + 1), dtype=np.uint32)
        codes[:, :steps] = self._codepoints[chars]
        codes[np.arange(n), lengths] = ord("\n")
        text = codes[np.arange(steps + 1) <= lengths[:, None]].tobytes().decode("utf-32-le")
        names = text.split("\n")[:-1]
        if prefix:
            names = [prefix + name for name in names]
        return names, logprob.tolist(), (lengths == steps).tolist()

    def _sample_one(self, seed, index, temperature, top_k, prefix, prefix_ids, max_length, base):
        """One stream, one context at a time, with Python scalars where that is faster."""
        chars, logps = self._walk(self._start_key(prefix_ids), 0, max_length - len(prefix_ids),
                                  sampling.stream_key(seed, index), None, temperature, top_k)
        total = base
        for lp in logps:
            total += lp
        ended = bool(chars) and chars[-1] == 0
        name = prefix + "".join(self.vocab[c] for c in (chars[:-1] if ended else chars))
        return name, total, not ended

    def _walk(self, key: int, step: int, steps: int, stream: int, u_row: np.ndarray | None,
              temperature: float, top_k: int | None) -> tuple[list[int], list[float]]:
        """Draw one name's characters from `step` on, with the uniforms of stream key `stream` (or
        u_row[step], the same numbers precomputed): the character ids drawn, the end (0) included if
        reached, and their log-probabilities. Plain Python on flat views of the cache tables."""
        uniform, choose_one = sampling.uniform, sampling.choose_one
        V, tail = self.vocab_size, self.vocab_size ** (self.block_size - 1)
        default = temperature == 1.0 and top_k is None
        chars: list[int] = []
        logps: list[float] = []
        for s in range(step, steps):
            cache = self._cache
            row = cache.row(key) if cache is not None else None
            if row is None:
                logp_rows, cdf_rows = self.rows_by_key(np.array([key], dtype=np.int64))
                flat_logp, flat_cdf, lo = _flat(logp_rows), _flat(cdf_rows), 0
            else:
                flat_logp, flat_cdf, lo = cache.flat_logp, cache.flat_cdf, row * V
            if not default:
                logp_row = np.asarray(flat_logp[lo:lo + V])
                flat_cdf, lo_cdf = _flat(sampling.cdf_rows(logp_row[None, :], temperature, top_k)), 0
            else:
                lo_cdf = lo
            u = uniform(stream, s) if u_row is None else float(u_row[s])
            c = choose_one(flat_cdf, u, lo_cdf, V)
            chars.append(c)
            logps.append(flat_logp[lo + c])
            if c == 0:
                break
            key = key % tail * V + c
        return chars, logps

    # ---- scoring -------------------------------------------------------------------------------

    def score(self, names: list[str]) -> list[Score]:
        """Per name: log-probability of each character and of the end '.', their sum, and whether
        the name is in the training corpus."""
        if not names:
            return []
        encoded = [self.encode(name) + [0] for name in names]
        contexts = np.concatenate([self._contexts(ids[:-1]) for ids in encoded])
        targets = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64)
        logp, _ = self.rows(contexts)
        picked = logp[np.arange(len(targets)), targets].tolist()
        out, pos = [], 0
        for name, ids in zip(names, encoded):
            values = picked[pos:pos + len(ids)]
            pos += len(ids)
            total = 0.0
            for v in values:
                total += v
            out.append(Score(name, total, list(zip(name + ".", values)), name in self.corpus))
        return out
