"""Counter-based random numbers and the sampling rule: where every character is drawn.

Every name has its own stream: the uniform used for the character at position `step` (counted
after the prefix) of the name at stream `index` under request seed `seed` is

    u(seed, index, step) = splitmix64(splitmix64(splitmix64(seed) ^ index) + (step + 1) * GOLDEN) >> 11, / 2**53

so it depends on nothing but those three integers: not on batching, threads or replicas.
`uniform` is the scalar twin of `uniforms`; both give bit-identical values. Likewise a character
is drawn by `draw_one` (one name, plain Python over flat views of the cache's tables: the lone and
small requests) or `draw` (a lane's names at once, numpy): the same comparisons on the same numbers.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_U64 = np.uint64
_INV53 = 1.0 / (1 << 53)


def mix(z: int) -> int:
    """splitmix64's finaliser on a Python int (taken modulo 2**64)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def mix_array(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (multiplication wraps modulo 2**64)."""
    z = z ^ (z >> _U64(30))
    z = z * _U64(_M1)
    z = z ^ (z >> _U64(27))
    z = z * _U64(_M2)
    return z ^ (z >> _U64(31))


def stream_key(seed: int, index: int) -> int:
    return mix(mix(seed) ^ index)


def stream_keys(seed: int, indices: np.ndarray) -> np.ndarray:
    return mix_array(np.asarray(indices, dtype=np.uint64) ^ _U64(mix(seed)))


def uniform(key: int, step: int) -> float:
    """u in [0, 1) for one stream key and step (`mix` written out: this runs once per character)."""
    z = (key + (step + 1) * GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return ((z ^ (z >> 31)) >> 11) * _INV53


def uniforms(keys: np.ndarray, steps: int) -> np.ndarray:
    """u in [0, 1) for an array of stream keys at steps 0..steps-1: shape (steps, len(keys))."""
    offsets = (np.arange(1, steps + 1, dtype=np.uint64) * _U64(GOLDEN))
    z = mix_array(offsets[:, None] + keys[None, :])
    return (z >> _U64(11)).astype(np.float64) * _INV53


def cdf_rows(logp: np.ndarray, temperature: float, top_k: int | None) -> np.ndarray:
    """Unnormalised cumulative distribution over the vocabulary for each row of log-probabilities.

    Temperature divides the log-probabilities (same as dividing the logits); top_k keeps the k
    most likely characters (all characters tied with the k-th are kept)."""
    # The top goes to 0 before dividing, so a tiny temperature tends to greedy instead of -inf / NaN.
    z = logp - logp.max(axis=1, keepdims=True)
    if temperature != 1.0:
        with np.errstate(over="ignore"):  # a tiny temperature sends the non-top entries to -inf: intended
            z /= temperature
    if top_k is not None and top_k < logp.shape[1]:
        kth = np.partition(z, logp.shape[1] - top_k, axis=1)[:, logp.shape[1] - top_k]
        z[z < kth[:, None]] = -np.inf
    np.exp(z, out=z)
    return np.cumsum(z, axis=1, out=z)


def choose(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row: the first index whose cumulative mass exceeds u * total."""
    x = u * cdf[:, -1]
    return (cdf[:, :-1] <= x[:, None]).sum(axis=1)


def choose_one(cdf: Sequence[float], u: float, lo: int = 0, size: int | None = None) -> int:
    """`choose` for one row, cdf[lo:lo + size] of any float sequence (a memoryview over a cache
    table is fastest): the same comparisons, so the same answer."""
    size = len(cdf) - lo if size is None else size
    last = lo + size - 1
    return bisect_right(cdf, u * cdf[last], lo, last) - lo


def cdf_rows_each(logp: np.ndarray, temperature: np.ndarray, top_k: np.ndarray) -> np.ndarray:
    """`cdf_rows` with a temperature and a top_k per row (top_k 0: none). Row by row the same
    operations, so the same numbers: x / 1.0 == x, and top_k's threshold is the same order statistic."""
    z = logp - logp.max(axis=1, keepdims=True)
    with np.errstate(over="ignore"):
        z /= temperature[:, None]
    k = top_k > 0
    if k.any():
        n, size = z.shape
        kth = np.full(n, -np.inf)
        kth[k] = np.sort(z[k], axis=1)[np.arange(int(k.sum())), size - top_k[k]]
        z[z < kth[:, None]] = -np.inf
    np.exp(z, out=z)
    return np.cumsum(z, axis=1, out=z)


def draw_one(flat_logp: Sequence[float], flat_cdf: Sequence[float], lo: int, size: int, u: float,
             temperature: float = 1.0, top_k: int | None = None) -> int:
    """One name's character: its row is flat_logp[lo:lo + size] (the temperature-1 CDF at the same
    place of flat_cdf). The draw of `draw` for one row, without numpy on the common path."""
    if temperature == 1.0 and top_k is None:
        return choose_one(flat_cdf, u, lo, size)
    cdf = cdf_rows(np.asarray(flat_logp[lo:lo + size])[None, :], temperature, top_k)  # (1, size)
    return choose_one(memoryview(cdf[0]), u, 0, size)


def draw(logp: np.ndarray, cdf: np.ndarray, rows: np.ndarray, u: np.ndarray, temperature: np.ndarray,
         top_k: np.ndarray, plain: bool) -> np.ndarray:
    """Each name's character: its row of the tables `logp` and `cdf` (log-probabilities and
    temperature-1 CDFs, (rows, V)) is rows[i], its uniform u[i], its parameters temperature[i] and
    top_k[i] (0: none); plain: every name is at temperature 1 without top_k, so `cdf` is used as it is."""
    if plain:
        return choose(cdf[rows], u)  # (n,) character ids
    return choose(cdf_rows_each(logp[rows], temperature, top_k), u)
