"""What a loaded model version means for generation: its vocabulary, context keys, a prefix's
log-probability, and one name drawn at a time. No HTTP and no scheduling here.

The model maps a context (block_size previous character ids, '.'=0 pads the start) to logits over
the vocabulary; `model_runner.ModelRows` turns those into float64 log-probabilities and CDFs behind
an exact cache. Requests become jobs (`jobs`) that the scheduler steps together; `offline` runs one
job on its own.
"""
from __future__ import annotations

import numpy as np

from artifact import typicality
from artifact.loader import LoadedModel
from service.core import sampler
from service.core.model_runner import ModelRows
from service.core.runtime import OnnxRuntime, Runtime

FEW_NAMES = 8  # answers of up to this many names place them in plain Python (see Engine.typicality)


class Engine:
    """One loaded model version: its vocabulary, its rows (cache + model call), and walking one name."""

    def __init__(self, model: LoadedModel, cache_rows: int = 8192, runtime: Runtime | None = None):
        self.model = model
        self.name: str = model.name
        self.version: str = model.version
        self.corpus: frozenset[str] = model.corpus_names
        entry = model.manifest.typicality
        self.quantiles: list[float] | None = entry["quantiles"] if entry else None  # older manifests: none
        self.percents = typicality.percents(self.quantiles) if self.quantiles else None
        runtime = runtime if runtime is not None else OnnxRuntime(model)
        self.vocab: str = runtime.vocab
        self.block_size: int = int(runtime.block_size)
        self.vocab_size = len(self.vocab)
        self.stoi = {c: i for i, c in enumerate(self.vocab)}
        self.codepoints = np.array([ord(c) for c in self.vocab], dtype=np.uint32)
        self.rows = ModelRows(runtime, cache_rows)
        self._tail = self.vocab_size ** (self.block_size - 1)

    def warm(self, max_rows: int | None = None) -> int:
        """Cache the contexts every name starts from (see ModelRows.warm)."""
        return self.rows.warm(max_rows)

    def typicality(self, logprobs: list[float], chars: list[int]) -> tuple[list[float], list[float] | None]:
        """Each name's log-probability per character (`chars`: the characters its logprob counts) and
        its percentile among the corpus names (None without quantiles in the manifest). A few names
        in plain Python (the same floats as numpy's), more in numpy."""
        if len(logprobs) <= FEW_NAMES:
            per_char = [lp / max(c, 1) for lp, c in zip(logprobs, chars)]
            if self.quantiles is None:
                return per_char, None
            q, at = self.quantiles, self.percents
            return per_char, [typicality.percentile_one(x, q, at) for x in per_char]
        per_char = typicality.per_char(np.array(logprobs), np.array(chars))  # (names,)
        if self.quantiles is None:
            return per_char.tolist(), None
        return per_char.tolist(), typicality.percentile(per_char, self.quantiles).tolist()

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

    # ---- one name at a time -----------------------------------------------------------------------

    def walk(self, key: int, steps: int, stream: int, temperature: float, top_k: int | None
             ) -> tuple[list[int], list[float]]:
        """Draw one name's characters with stream key `stream`: the character ids drawn, the end (0)
        included if reached, and their log-probabilities. Plain Python over flat views of the cache
        tables: for a lone small request, cheaper than numpy calls on tiny arrays (the same
        draw as the lanes'; the tests check both against a reference loop)."""
        uniform, draw_one, rows = sampler.uniform, sampler.draw_one, self.rows
        V, tail = self.vocab_size, self._tail
        chars: list[int] = []
        logps: list[float] = []
        for s in range(steps):
            cache = rows.cache
            row = cache.row(key) if cache is not None else None
            if row is None:
                flat_logp, flat_cdf = rows.one(key)
                lo = 0
            else:
                flat_logp, flat_cdf, lo = cache.flat_logp, cache.flat_cdf, row * V
            c = draw_one(flat_logp, flat_cdf, lo, V, uniform(stream, s), temperature, top_k)
            chars.append(c)
            logps.append(flat_logp[lo + c])
            if c == 0:
                break
            key = key % tail * V + c
        return chars, logps
