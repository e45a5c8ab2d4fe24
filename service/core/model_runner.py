"""The model's rows through an exact cache: context -> float64 log-probabilities and temperature-1 CDF.

A context is keyed by one integer, its character ids read as a base-vocab number
(sum(context[j] * vocab ** (block_size - 1 - j))). The model is deterministic, so the cache
changes no result, only the cost: a context seen before is a lookup instead of a model call.
Rows are written once and never changed in place (a full cache is replaced, not overwritten), so
a reader holding a table keeps reading valid rows while another thread inserts.
"""
from __future__ import annotations

import itertools
import threading

import numpy as np

from service.core import sampler as sampling
from service.core.runtime import Runtime

RUN_CHUNK = 512  # rows per model call: bounds the temporaries of one call (and onnxruntime's arena)
WARM_CHUNK = 1024  # contexts per model call while warming the cache


class DictCache:
    """At most `capacity` contexts, in a dictionary key -> row. When full it is replaced by a fresh
    one that keeps the first `keep` rows (the warmed contexts, those names most likely pass through) and
    the rows that were found again since they were written: a context seen twice is likely to be
    seen again, so fewer rows are computed than when starting from the warm rows alone."""

    def __init__(self, capacity: int, vocab_size: int):
        self.capacity = capacity
        self.slots: dict[int, int] = {}
        self.logp = np.empty((capacity, vocab_size))  # (capacity, V) float64
        self.cdf = np.empty((capacity, vocab_size))  # (capacity, V) float64, unnormalised
        self.flat_logp, self.flat_cdf = memoryview(self.logp.reshape(-1)), memoryview(self.cdf.reshape(-1))
        self.keys = np.empty(capacity, dtype=np.int64)  # the key of each row
        self.found = bytearray(capacity)  # 1: the row was found again after it was written
        self._found = np.frombuffer(self.found, dtype=np.uint8)
        self.size = 0
        self.keep = 0

    def row(self, key: int) -> int | None:
        row = self.slots.get(key)
        if row is not None:
            self.found[row] = 1
        return row

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(row per key, mask of the keys not cached, or None when all are)."""
        rows = np.fromiter(map(self.slots.get, keys.tolist(), itertools.repeat(-1)), np.int64, len(keys))
        miss = rows < 0
        if miss.any():
            self._found[rows[~miss]] = 1
            return rows, miss
        self._found[rows] = 1
        return rows, None

    def insert(self, keys: np.ndarray, logp: np.ndarray, cdf: np.ndarray) -> np.ndarray | None:
        """Store rows for distinct keys (under the caller's lock): the row of each key, or None when
        they do not fit."""
        slots = self.slots
        if len(keys) == 1:  # a name walked alone: the same rows as below, without the lists
            key = int(keys[0])
            row = slots.get(key)
            if row is None:
                row = self.size
                if row >= self.capacity:
                    return None
                self.logp[row], self.cdf[row], self.keys[row] = logp[0], cdf[0], key
                slots[key] = row  # after the row is written, as below
                self.size = row + 1
            return np.array([row], dtype=np.int64)
        listed = keys.tolist()
        fresh = [i for i, k in enumerate(listed) if k not in slots]
        start, end = self.size, self.size + len(fresh)
        if end > self.capacity:
            return None
        if len(fresh) == len(listed):  # all new (the usual case): the same rows as below, copied as blocks
            self.logp[start:end], self.cdf[start:end], self.keys[start:end] = logp, cdf, keys
            slots.update(zip(listed, range(start, end)))  # after the rows are written, as below
            self.size = end
            return np.arange(start, end, dtype=np.int64)
        self.logp[self.size:end] = logp[fresh]
        self.cdf[self.size:end] = cdf[fresh]
        self.keys[self.size:end] = keys[fresh]
        for i, row in zip(fresh, range(self.size, end)):
            slots[int(keys[i])] = row  # after the row is written: a reader that finds it reads it whole
        self.size = end
        return np.fromiter(map(slots.__getitem__, listed), np.int64, len(keys))

    def fresh(self) -> DictCache:
        """An empty cache of the same size holding this one's warm rows and the rows found again
        (at most half of it)."""
        new = DictCache(self.capacity, self.logp.shape[1])
        found = np.flatnonzero(self._found[:self.size])
        rows = np.concatenate([np.arange(self.keep), found[found >= self.keep]])[:self.capacity // 2]
        n = len(rows)
        new.logp[:n], new.cdf[:n], new.keys[:n] = self.logp[rows], self.cdf[rows], self.keys[rows]
        new.slots = dict(zip(new.keys[:n].tolist(), range(n)))
        new.size = n
        new.keep = min(self.keep, n)
        return new


class DenseCache:
    """Every context of a small context space (vocab ** block_size rows, e.g. 19,683 for 27
    characters and 3 positions): the key is the row."""

    def __init__(self, contexts: int, vocab_size: int):
        self.filled = np.zeros(contexts, dtype=bool)
        self.logp = np.empty((contexts, vocab_size))
        self.cdf = np.empty((contexts, vocab_size))
        self.flat_logp, self.flat_cdf = memoryview(self.logp.reshape(-1)), memoryview(self.cdf.reshape(-1))
        self._filled = memoryview(self.filled)
        self.keep = 0

    def row(self, key: int) -> int | None:
        return key if self._filled[key] else None

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        miss = ~self.filled[keys]
        return keys.copy(), (miss if miss.any() else None)

    def insert(self, keys: np.ndarray, logp: np.ndarray, cdf: np.ndarray) -> np.ndarray:
        self.logp[keys] = logp
        self.cdf[keys] = cdf
        self.filled[keys] = True  # after the rows: a reader that sees True reads finished rows
        return keys


class ModelRows:
    """Log-probability and CDF rows for context keys: from the cache, else from one model call for
    all the keys it lacks."""

    def __init__(self, runtime: Runtime, cache_rows: int):
        self.runtime = runtime
        self.vocab_size = len(runtime.vocab)
        self.block_size = int(runtime.block_size)
        if self.vocab_size ** self.block_size >= 2 ** 63:
            raise ValueError(f"vocab {self.vocab_size} ** block_size {self.block_size} does not fit "
                             "the engine's 63-bit context keys")
        self.powers = self.vocab_size ** np.arange(self.block_size - 1, -1, -1, dtype=np.int64)
        self.cache_rows = cache_rows
        self.computed = 0  # rows the model has computed (what the cache could not answer)
        self._lock = threading.Lock()
        contexts = self.vocab_size ** self.block_size
        self.cache: DictCache | DenseCache | None = (
            None if not cache_rows else DenseCache(contexts, self.vocab_size) if contexts <= cache_rows
            else DictCache(cache_rows, self.vocab_size))

    def decode(self, keys: np.ndarray) -> np.ndarray:
        """Context keys -> (n, block_size) character ids."""
        return keys[:, None] // self.powers[None, :] % self.vocab_size

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        """One model call (in chunks of RUN_CHUNK rows): (n, block_size) int64 -> (n, V) float32, the
        graph's own output (the inference protocol answers it as it is; the cache holds no logits)."""
        self.computed += len(contexts)
        if len(contexts) <= RUN_CHUNK:
            return self.runtime.run(contexts)
        return np.concatenate([self.runtime.run(contexts[i:i + RUN_CHUNK])
                               for i in range(0, len(contexts), RUN_CHUNK)])

    def compute(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One model call for distinct keys: float64 log-softmax and temperature-1 CDF rows, (n, V) each."""
        logits = self.logits(self.decode(keys)).astype(np.float64)  # (n, V)
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logits, sampling.cdf_rows(logits, 1.0, None)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log-probability table, CDF table, row of each key in them) for int64 keys: usually the
        cache's own tables, so callers gather only what they use."""
        cache = self.cache
        if cache is None:
            unique, inverse = np.unique(keys, return_inverse=True)
            logp, cdf = self.compute(unique)
            return logp, cdf, inverse.reshape(-1)
        rows, miss = cache.find(keys)
        if miss is None:
            return cache.logp, cache.cdf, rows
        missing = keys[miss]
        if len(missing) <= 64:  # a few misses: a dictionary dedupes them faster than np.unique
            order = dict.fromkeys(missing.tolist())
            unique = np.fromiter(order, np.int64, len(order))
            for i, k in enumerate(order):
                order[k] = i
            inverse = np.fromiter(map(order.__getitem__, missing.tolist()), np.int64, len(missing))
        else:
            unique, inverse = np.unique(missing, return_inverse=True)
            inverse = inverse.reshape(-1)
        table_logp, table_cdf, found = self.add(unique)
        if table_logp is cache.logp:  # stored in the cache the hits came from
            rows[miss] = found[inverse]
            return cache.logp, cache.cdf, rows
        # This call's rows come from two tables: gather them into one.
        hit = ~miss
        out_logp = np.empty((len(keys), self.vocab_size))
        out_cdf = np.empty_like(out_logp)
        out_logp[hit], out_cdf[hit] = cache.logp[rows[hit]], cache.cdf[rows[hit]]
        out_logp[miss], out_cdf[miss] = table_logp[found[inverse]], table_cdf[found[inverse]]
        return out_logp, out_cdf, np.arange(len(keys))

    def add(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`lookup` for distinct keys the cache lacks (a caller that has just looked them up): one
        model call, its rows stored; (log-probability table, CDF table, row of each key)."""
        logp, cdf = self.compute(keys)
        cache = self.cache
        if cache is None:
            return logp, cdf, np.arange(len(keys))
        with self._lock:
            stored = self.cache.insert(keys, logp, cdf) if self.cache is cache else None
            if stored is not None:
                return cache.logp, cache.cdf, stored
            if self.cache is cache:  # full: start afresh (readers of the old tables are unaffected)
                self.cache = cache.fresh()
                if len(keys) <= self.cache_rows - self.cache.size:
                    self.cache.insert(keys, logp, cdf)
        return logp, cdf, np.arange(len(keys))

    def one(self, key: int) -> tuple[memoryview, memoryview]:
        """The log-probability and CDF rows of one context (a name walked alone), as flat views: the
        rows of `lookup`, for a key the caller has just missed in the cache (no search, no dedupe)."""
        logp, cdf, found = self.add(np.array([key], dtype=np.int64))
        row = int(found[0])
        return memoryview(logp[row]), memoryview(cdf[row])

    def logp_rows(self, contexts: np.ndarray) -> np.ndarray:
        """(n, block_size) contexts -> (n, V) log-probabilities."""
        logp, _, rows = self.lookup(np.asarray(contexts, dtype=np.int64) @ self.powers)
        return logp[rows]

    def warm(self, max_rows: int | None = None) -> int:
        """Fill the cache with the contexts names most likely pass through: best first by the
        model's own probability of reaching each one from the start (temperature 1; a context that
        several prefixes lead to sums them), in rounds of WARM_CHUNK contexts, up to max_rows
        distinct contexts (default and at most: half a dictionary cache, what a renewal keeps).
        These rows survive when the cache is renewed. A cache warmed this way answers more of the
        steps of the names actually drawn than one holding the first characters' contexts alone,
        for the same rows. Returns the number of contexts computed."""
        if self.cache is None:
            return 0
        half = self.cache_rows // 2
        budget = half if max_rows is None else max_rows
        if isinstance(self.cache, DictCache):
            budget = min(budget, half)  # a renewal keeps at most half: warm rows beyond it would be dropped
        V, bs = self.vocab_size, self.block_size
        budget = min(budget, V ** bs)
        tail = V ** (bs - 1)
        keys = np.zeros(1, dtype=np.int64)  # the frontier: contexts not looked up yet, from the all-padding one
        reach = np.zeros(1)  # log of each one's expected visits by a name
        done = np.zeros(0, dtype=np.int64)  # the contexts looked up
        while len(done) < budget and len(keys):
            take = min(WARM_CHUNK, budget - len(done), len(keys))
            best = np.argpartition(-reach, take - 1)[:take] if take < len(keys) else np.arange(len(keys))
            chosen, chosen_reach = keys[best], reach[best]
            logp, _, rows = self.lookup(chosen)
            done = np.concatenate([done, chosen])
            rest = np.ones(len(keys), dtype=bool)
            rest[best] = False
            children = (chosen % tail * V)[:, None] + np.arange(1, V)  # (take, V-1): each next character but the end
            keys, reach = frontier(np.concatenate([keys[rest], children.reshape(-1)]),
                                   np.concatenate([reach[rest], (chosen_reach[:, None] + logp[rows, 1:]).reshape(-1)]),
                                   done, budget - len(done))
        with self._lock:
            self.cache.keep = max(self.cache.keep, getattr(self.cache, "size", 0))
        return len(done)


def frontier(keys: np.ndarray, reach: np.ndarray, done: np.ndarray, room: int) -> tuple[np.ndarray, np.ndarray]:
    """The warm-up's next candidates: each context once (the prefixes that reach it summed), none
    already looked up, and only the `room` likeliest (a prefix is never likelier than the prefix it
    extends, so a context ranked below them now seldom rises into a later round)."""
    keys, inverse = np.unique(keys, return_inverse=True)
    merged = np.full(len(keys), -np.inf)
    np.logaddexp.at(merged, inverse.reshape(-1), reach)
    fresh = ~np.isin(keys, done)
    keys, merged = keys[fresh], merged[fresh]
    if len(keys) > room:
        top = np.argpartition(-merged, room - 1)[:room]
        keys, merged = keys[top], merged[top]
    return keys, merged
