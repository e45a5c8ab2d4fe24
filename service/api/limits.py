"""Rates per client, counted in work (names), shared by every worker of one process.

Each client (a token's name, or without tokens the client's address) has a token bucket: `burst`
names at most, refilled at `rate` names per second; a request takes what it costs (a count=1000
generate takes 1000) or is refused with 429. The buckets live in a fixed table in a shared file
(`python -m service` creates it before its workers start and names it in NAMEGEN_RATE_TABLE), so a
client gets one rate whichever worker its connections land on; a lone app makes a private table.
Servers given one file (NAMEGEN_RATE_TABLE, on a memory filesystem every replica of a host mounts)
share it the same way: flock and CLOCK_MONOTONIC are the kernel's, so one host's containers agree.
One lock (flock on the file) guards the table: a take is a few microseconds under it.

The table is open addressing over PROBE slots from the key's hash. A slot whose bucket has
refilled to its burst holds no information (a fresh bucket is the same), so it may be taken by any
key; two clients share a bucket only when PROBE busy buckets crowd one neighbourhood (SLOTS is
sized so that takes far more active clients than one process serves)."""
from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException

# key hash (0: empty), names left, monotonic time of the last update, time the bucket is full again
SLOT = struct.Struct("<Qddd")
SLOTS = 1 << 15
PROBE = 16
SIZE = SLOT.size * SLOTS
# A RateLimit-Policy name: the draft's fields name the quota policy a response is counted against.
POLICY = "names"
LIMIT = "namegen.limit"  # scope key: (Limiter, client key, rate, burst), set by service.api.auth's middleware


@dataclass(frozen=True)
class Refusal:
    retry_after: int  # whole seconds until the bucket holds the request's cost
    remaining: int  # names left now
    policy: str  # the RateLimit-Policy field value
    burst: int  # the most this client may ever take at once


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest(),
                          "little") or 1


def create_table(directory: str | None = None) -> Path:
    """A new zeroed table file (for `python -m service` to hand to its workers); the caller removes it."""
    base = directory or ("/dev/shm" if os.path.isdir("/dev/shm") else None)  # memory, not disk, where there is
    fd, path = tempfile.mkstemp(prefix="namegen-rates-", dir=base)
    os.ftruncate(fd, SIZE)
    os.close(fd)
    return Path(path)


class TableError(ValueError):
    """A rate table file that cannot be shared; the message is one line naming the file."""


def shared_table(path: Path) -> Path:
    """The table at `path`, made if missing, for every server that names it. Servers starting at once
    each build a full-size file beside it and link it to the name (link, unlike rename, never
    replaces): the first wins, the others use its file, and none ever maps a short one."""
    try:
        if not path.exists():
            made = create_table(str(path.parent))
            try:
                os.link(made, path)
            except FileExistsError:
                pass
            finally:
                made.unlink()
        fd = os.open(path, os.O_RDWR)  # what every worker will do: fail here, in one line, not in each
        size = os.fstat(fd).st_size
        os.close(fd)
    except OSError as e:
        raise TableError(f"{path}: {e.strerror}") from None
    if size != SIZE:
        raise TableError(f"{path} is {size} bytes, not a rate table of this version ({SIZE} bytes): "
                         "remove it while no server uses it, or name another file")
    return path


class Limiter:
    """Token buckets in the shared table. Clocks are CLOCK_MONOTONIC, one clock for all processes."""

    def __init__(self, rate: float, burst: int, table: Path | None = None):
        self.rate, self.burst = rate, burst
        if table is None:
            self.fd = -1
            self.map = mmap.mmap(-1, SIZE)
        else:
            self.fd = os.open(table, os.O_RDWR)
            self.map = mmap.mmap(self.fd, SIZE)

    def policy(self, rate: float, burst: int) -> str:
        # q names per window of w seconds: the burst, and the time to refill it from empty
        return f'"{POLICY}";q={burst};w={max(1, math.ceil(burst / rate))}'

    def take(self, key: str, cost: int, rate: float | None = None, burst: int | None = None) -> Refusal | None:
        """Take `cost` names from the key's bucket; a Refusal (nothing taken) when it holds fewer."""
        rate, burst = rate or self.rate, burst or self.burst
        h = key_hash(key)
        now = time.monotonic()
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            offset, left = self._find(h, now, rate, burst)
            if left >= cost:
                left = min(burst, left - cost)  # a negative cost gives names back
                SLOT.pack_into(self.map, offset, h, left, now, now + (burst - left) / rate)
                return None
            SLOT.pack_into(self.map, offset, h, left, now, now + (burst - left) / rate)
        finally:
            if self.fd >= 0:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        wait = math.ceil((cost - left) / rate) if cost <= burst else math.ceil(burst / rate)
        return Refusal(max(1, wait), int(left), self.policy(rate, burst), burst)

    def _find(self, h: int, now: float, rate: float, burst: int) -> tuple[int, float]:
        """The slot of key hash h (or a free one for it) and the names its bucket holds now."""
        start = h % SLOTS
        free = None
        for i in range(PROBE):
            offset = ((start + i) % SLOTS) * SLOT.size
            key, left, then, full = SLOT.unpack_from(self.map, offset)
            if key == h:
                return offset, min(burst, left + (now - then) * rate)
            if free is None and now >= full:  # also an empty slot (all zero)
                free = offset  # empty, or a bucket back at its burst: the same as a fresh one
        if free is None:
            free = start * SLOT.size  # every neighbour busy: share the first (see the module's note)
            key, left, then, full = SLOT.unpack_from(self.map, free)
            return free, min(burst, left + (now - then) * rate)
        return free, float(burst)

    def close(self) -> None:
        self.map.close()
        if self.fd >= 0:
            os.close(self.fd)


def charge(scope, cost: int) -> None:
    """Take a request's cost from its client's bucket (when a limit applies), else 429."""
    limit = scope.get(LIMIT)
    if limit is None:
        return
    limiter, key, rate, burst = limit
    refused = limiter.take(key, cost, rate, burst)
    if refused is not None:
        why = (f"over this client's rate: {cost} names asked, {refused.remaining} left" if cost <= refused.burst
               else f"{cost} names is more than this client may take at once ({refused.burst}): ask for fewer")
        raise HTTPException(429, why,
                            headers={"Retry-After": str(refused.retry_after), "RateLimit-Policy": refused.policy,
                                     "RateLimit": f'"{POLICY}";r={refused.remaining};t={refused.retry_after}'})


def refund(scope, cost: int) -> None:
    """Give a request's cost back (it was charged, then shed for want of room: no work was done)."""
    limit = scope.get(LIMIT)
    if limit is not None:
        limiter, key, rate, burst = limit
        limiter.take(key, -cost, rate, burst)
