"""How typical a name is for a model: its log-probability per character, placed among the model's own
corpus names. numpy + onnxruntime only.

A version's manifest may hold `typicality`: {"measure": "logprob_per_char", "quantiles": [101 numbers]},
the 0th, 1st, ..., 100th percentiles of the per-character log-probability of every corpus name,
computed once (at publish, or later with `python -m artifact typicality`). A served name's percentile
is read off them: between two adjacent quantiles the true share of corpus names lies between their two
percent points, so the figure is within one point of a direct count.
"""
from __future__ import annotations

import json
import math
import os
from bisect import bisect_right
from pathlib import Path

import numpy as np

from artifact.loader import LoadedModel, load_version, log_softmax
from artifact.manifest import MANIFEST_FILE, TYPICALITY_POINTS, Manifest

MEASURE = "logprob_per_char"
ROWS_PER_CALL = 8192  # contexts per model call: bounds the memory of one call


def per_char(logprob: np.ndarray | float, chars: np.ndarray | int) -> np.ndarray | float:
    """A name's log-probability per character it counts: its characters, plus the end when it has one."""
    return logprob / np.maximum(chars, 1)


def corpus_scores(model: LoadedModel, names: list[str]) -> np.ndarray:
    """(names,) log-probability per character of each name (each character, then the end)."""
    stoi = {c: i for i, c in enumerate(model.vocab)}
    block = model.block_size
    targets = np.array([stoi[c] for n in names for c in n + "."], dtype=np.int64)  # (rows,)
    lengths = np.array([len(n) + 1 for n in names], dtype=np.int64)  # (names,)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)  # (rows,) first row of each row's name
    depth = np.arange(len(targets)) - starts  # (rows,) position in its name
    contexts = np.zeros((len(targets), block), dtype=np.int64)  # (rows, block) '.' pads a name's start
    for back in range(1, block + 1):
        has = depth >= back
        contexts[has, block - back] = targets[np.nonzero(has)[0] - back]
    picked = np.empty(len(targets))  # (rows,)
    for lo in range(0, len(targets), ROWS_PER_CALL):
        logp = log_softmax(model.logits(contexts[lo:lo + ROWS_PER_CALL]))  # (chunk, vocab)
        picked[lo:lo + len(logp)] = logp[np.arange(len(logp)), targets[lo:lo + ROWS_PER_CALL]]
    totals = np.add.reduceat(picked, np.cumsum(lengths) - lengths)  # (names,)
    return per_char(totals, lengths)


def quantiles(scores: np.ndarray) -> list[float]:
    return np.quantile(scores, np.linspace(0, 1, TYPICALITY_POINTS)).tolist()


def percentile(scores: np.ndarray | list[float], points: list[float]) -> np.ndarray:
    """The share (0..100) of corpus names below each score, read off the quantiles."""
    return np.interp(scores, points, percents(points))


def percents(points: list[float]) -> list[float]:
    """The percent point of each quantile (0 .. 100)."""
    return np.linspace(0, 100, len(points)).tolist()


def percentile_one(score: float, points: list[float], at: list[float]) -> float:
    """`percentile` of one score in plain Python (`at`: percents(points)), for an answer of a few names,
    where numpy's call costs more than the arithmetic. The same steps as np.interp, so the same float."""
    if score != score:  # NaN
        return score
    j = bisect_right(points, score) - 1  # points[j] <= score < points[j + 1]
    if j < 0:
        return at[0]
    if j >= len(points) - 1:  # at or past the last quantile
        return at[-1]
    if points[j] == score:
        return at[j]
    slope = (at[j + 1] - at[j]) / (points[j + 1] - points[j])
    value = slope * (score - points[j]) + at[j]
    if math.isnan(value):
        value = slope * (score - points[j + 1]) + at[j + 1]
        if math.isnan(value) and at[j] == at[j + 1]:
            value = at[j]
    return value


def summary(model: LoadedModel) -> dict:
    """The manifest's `typicality` entry for a loaded version."""
    return {"measure": MEASURE, "quantiles": quantiles(corpus_scores(model, sorted(model.corpus_names)))}


def add_to_version(path: str | Path) -> Manifest:
    """Compute a published version's quantiles and rewrite its manifest in one rename (its hashed
    files are untouched, so it verifies as before)."""
    path = Path(path)
    model = load_version(path)
    manifest = model.manifest
    manifest.typicality = summary(model)
    manifest.validate()
    tmp = path / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(json.dumps(manifest.to_dict(), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path / MANIFEST_FILE)
    return manifest
