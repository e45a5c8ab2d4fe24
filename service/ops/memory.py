"""Large blocks straight from the kernel and back to it.

glibc's malloc raises its mmap threshold after the first large block is freed, so from then on every
large temporary (a request's rows, a renewed cache table, onnxruntime's outputs) comes from the heap,
and the heap keeps its high-water mark for the life of the worker: one heavy request then costs
resident memory long after it ends. A fixed threshold keeps such blocks mapped and unmapped on free
(figures in docs/reliability.md, "Memory"). It is what `MALLOC_MMAP_THRESHOLD_` does, set from the
service's own settings so `make serve`, the tests and the containers all get it.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def map_large_blocks(threshold: int) -> bool:
    """Blocks of `threshold` bytes or more are mapped, and returned when freed. False (and nothing
    changed) for a threshold of 0 or where the C library has no mallopt (not glibc)."""
    if threshold <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
