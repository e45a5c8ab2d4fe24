"""Iteration-level scheduling (continuous batching): every active name of every request in flight
advances at least one character per step, together.

A step looks every active context up in the cache at once and makes at most one model call for
all the misses (per model version being served), then draws one character per name from that
name's own random stream (in the scalar lane a name draws on while its next context is cached,
so its steps go to its misses). Requests join at the next step boundary and leave the moment
their last name ends; a cancelled request's names leave at the next step. Because each name's
randomness is a function of (seed, stream index, step) and each context's row is the same
whatever batch computed it, no result depends on what else was in the batch.

`Batch` is the synchronous core (`offline` steps one on its own); `Scheduler` drives one per worker
from the event loop. The scheduler decides which names step; the model runner (`model_runner`)
computes their rows and the sampler (`sampler`) draws their characters.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, NamedTuple

import numpy as np

from service.core import sampler
from service.core.engine import Engine
from service.core.jobs import ChunksJob, InferJob, Job, Round, RoundsJob
from service.logs import get_logger

log = get_logger("scheduler")

STEP_NAMES = 2048  # names (or /score rows) stepped together at most: bounds one step's time and memory
# Event-loop passes between two steps. A finished name's response takes a pass to be written, and
# the next request a few from its bytes to its submit (socket read, then its task's first step):
# stepping only every few passes lets more names share a step's fixed cost (its model call), at a
# few microseconds of latency per step (docs/service.md has the measured effect).
STEP_PASSES = 4
SMALL_STEP = 64  # names a scalar lane holds at most: below a hundred or so, plain Python beats numpy's per-call cost
SMALL_ROUND = 8  # rounds of up to this many names are turned into strings one by one (cheaper than numpy)


class Arena:
    """Per-name result rows (characters drawn, length, log-probability, cut) for the names of one
    lane; a request's names hold a contiguous range while they run."""

    def __init__(self, rows: int = 256, width: int = 32):
        self.chars = np.zeros((rows, width), dtype=np.uint16)  # (rows, longest name) character ids
        self.u = np.zeros((rows, width))  # (rows, longest name) each name's uniform for each step
        self.length = np.zeros(rows, dtype=np.int64)
        self.total = np.zeros(rows)
        self.cut = np.zeros(rows, dtype=bool)
        self.owner = np.zeros(rows, dtype=np.int64)  # the job id of each row
        self.free = [(0, rows)]  # sorted (start, length) ranges

    def alloc(self, n: int, width: int) -> int:
        if width > self.chars.shape[1]:
            self.chars = np.pad(self.chars, ((0, 0), (0, width - self.chars.shape[1])))
            self.u = np.pad(self.u, ((0, 0), (0, width - self.u.shape[1])))
        for i, (start, size) in enumerate(self.free):
            if size >= n:
                self.free[i:i + 1] = [(start + n, size - n)] if size > n else []
                return start
        old = len(self.length)
        grow = max(old, n)
        self.chars, self.u = np.pad(self.chars, ((0, grow), (0, 0))), np.pad(self.u, ((0, grow), (0, 0)))
        self.length, self.total = np.pad(self.length, (0, grow)), np.pad(self.total, (0, grow))
        self.cut, self.owner = np.pad(self.cut, (0, grow)), np.pad(self.owner, (0, grow))
        self.release(old, grow)
        return self.alloc(n, width)

    def release(self, start: int, n: int) -> None:
        free = sorted([*self.free, (start, n)])
        merged = [free[0]]
        for s, size in free[1:]:
            last_s, last_size = merged[-1]
            if last_s + last_size == s:
                merged[-1] = (last_s, last_size + size)
            else:
                merged.append((s, size))
        self.free = merged


class Joining(NamedTuple):
    """A round that joins the vectorised lane at its next step."""

    round: Round
    start: int  # its first arena row (its names hold start:start + round.n)


class InArena:
    """A generate job's round in the vectorised lane."""

    __slots__ = ("job", "start", "left")

    def __init__(self, job: RoundsJob, start: int, left: int):
        self.job = job
        self.start = start  # its first arena row
        self.left = left  # its names not yet ended


class Lane:
    """The active names of one model version as parallel arrays, one entry per name."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.rows = engine.rows
        self.V = engine.vocab_size
        self.tail = self.V ** (engine.block_size - 1)
        self.arena = Arena()
        self.key = np.zeros(0, dtype=np.int64)  # context key of each active name
        self.pos = np.zeros(0, dtype=np.int64)  # characters drawn so far (after the prefix)
        self.limit = np.zeros(0, dtype=np.int64)  # characters it may draw (max_length - prefix)
        self.acc = np.zeros(0)  # its log-probability so far
        self.slot = np.zeros(0, dtype=np.int64)  # its arena row
        self.temp = np.zeros(0)  # temperature
        self.topk = np.zeros(0, dtype=np.int64)  # top_k, 0 for none
        self.plain = True  # every active name samples at temperature 1 without top_k
        self.joining: list[Joining] = []
        self.rounds: dict[int, InArena] = {}  # by job id
        self.scores: list[ChunksJob] = []

    @property
    def idle(self) -> bool:
        return not self.rounds and not self.scores

    # ---- joining and leaving -------------------------------------------------------------------

    def add(self, job: RoundsJob | ChunksJob) -> None:
        if job.kind == "score":
            self.scores.append(job)
            return
        r = job.next_round()
        start = self.arena.alloc(r.n, r.steps)
        self.arena.owner[start:start + r.n] = job.id
        self.rounds[job.id] = InArena(job, start, r.n)
        self.joining.append(Joining(r, start))

    def remove(self, job: RoundsJob | ChunksJob) -> None:
        """Drop a job's names (a cancelled request): they take no further step."""
        if job.kind == "score":
            if job in self.scores:
                self.scores.remove(job)
            return
        entry = self.rounds.pop(job.id, None)
        if entry is None:
            return
        start = entry.start
        self.joining = [j for j in self.joining if j.start != start]
        self._keep(self.arena.owner[self.slot] != job.id)
        self.arena.release(start, job.round.n)

    def _join(self) -> None:
        parts = self.joining
        self.joining = []
        rs = [p.round for p in parts]
        n = [r.n for r in rs]

        single = all(k == 1 for k in n)

        def each(values, dtype):  # one value per round, repeated for its names
            return np.array(values, dtype=dtype) if single else np.repeat(np.array(values, dtype=dtype), n)

        self.key = np.concatenate([self.key, each([r.start_key for r in rs], np.int64)])
        self.pos = np.concatenate([self.pos, np.zeros(sum(n), np.int64)])
        self.limit = np.concatenate([self.limit, each([r.steps for r in rs], np.int64)])
        self.acc = np.concatenate([self.acc, each([r.base for r in rs], np.float64)])
        starts = each([p.start for p in parts], np.int64)
        slots = starts if single else starts + np.arange(len(starts)) - np.repeat(np.cumsum(n) - n, n)
        self.slot = np.concatenate([self.slot, slots])
        # Every joining name's uniforms for all its steps, drawn once here for all of them.
        steps = max(r.steps for r in rs)
        skeys = rs[0].skeys if len(rs) == 1 else np.concatenate([r.skeys for r in rs])
        self.arena.u[slots, :steps] = sampler.uniforms(skeys, steps).T
        self.temp = np.concatenate([self.temp, each([r.temperature for r in rs], np.float64)])
        self.topk = np.concatenate([self.topk, each([r.top_k for r in rs], np.int64)])
        self.plain = self.plain and all(r.temperature == 1.0 and not r.top_k for r in rs)

    def _keep(self, keep: np.ndarray) -> None:
        self.key, self.pos, self.limit = self.key[keep], self.pos[keep], self.limit[keep]
        self.acc, self.slot, self.temp, self.topk = self.acc[keep], self.slot[keep], self.temp[keep], self.topk[keep]
        if not self.plain:
            self.plain = bool(((self.temp == 1.0) & (self.topk == 0)).all())

    # ---- one step ------------------------------------------------------------------------------

    def step(self) -> list[Job]:
        """Advance every active name by one character and every /score request by one chunk of
        rows; returns the jobs that finished."""
        if self.joining:
            self._join()
        n = len(self.key)
        chunks = [job.chunk() for job in self.scores]
        keys = np.concatenate([self.key, *[c[0] for c in chunks]]) if chunks else self.key
        if not len(keys):
            return []
        logp, cdf_table, rows = self.rows.lookup(keys)  # one cache lookup, at most one model call
        finished = []
        at = n
        for job, (chunk_keys, targets) in zip(list(self.scores), chunks):
            job.take(logp[rows[at:at + len(chunk_keys)], targets])
            at += len(chunk_keys)
            if job.done:
                self.scores.remove(job)
                finished.append(job)
        if n:
            finished += self._draw(logp, cdf_table, rows[:n])
        return finished

    def _draw(self, logp: np.ndarray, cdf_table: np.ndarray, rows: np.ndarray) -> list[Job]:
        arena = self.arena
        c = sampler.draw(logp, cdf_table, rows, arena.u[self.slot, self.pos], self.temp, self.topk,
                         self.plain)  # (n,) character ids
        self.acc += logp[rows, c]
        arena.chars[self.slot, self.pos] = c
        self.pos += 1
        end = (c == 0) | (self.pos >= self.limit)
        finished = []
        if end.any():
            slots, stopped = self.slot[end], c[end] == 0
            arena.length[slots] = self.pos[end] - stopped
            arena.total[slots] = self.acc[end]
            arena.cut[slots] = ~stopped
            counts: dict[int, int] = {}
            for job_id in arena.owner[slots].tolist():
                counts[job_id] = counts.get(job_id, 0) + 1
            for job_id, k in counts.items():
                entry = self.rounds[job_id]
                if entry.left > k:
                    entry.left -= k
                elif self._round_done(entry.job, entry.start):
                    finished.append(entry.job)
            keep = ~end
            c = c[keep]
            self._keep(keep)
        self.key = self.key % self.tail * self.V + c
        return finished

    def _round_done(self, job: RoundsJob, start: int) -> bool:
        """A job's names of this round have all ended: hand them over; True when the job is done
        (else its next round joins at the next step)."""
        del self.rounds[job.id]
        n = job.round.n
        a = self.arena
        if n <= SMALL_ROUND:
            vocab = self.engine.vocab
            names = ["".join([vocab[c] for c in a.chars[i, :a.length[i]].tolist()]) for i in range(start, start + n)]
        else:
            names = self._names(start, n)
        job.round_done(names, a.total[start:start + n].tolist(), a.cut[start:start + n].tolist())
        a.release(start, n)
        if job.done:
            return True
        self.add(job)
        return False

    def _names(self, start: int, n: int) -> list[str]:
        a = self.arena
        lengths = a.length[start:start + n]
        width = int(lengths.max()) + 1
        # Names as one string: each name's characters then a newline (never in a vocabulary).
        codes = np.empty((n, width), dtype=np.uint32)
        codes[:, :width - 1] = self.engine.codepoints[a.chars[start:start + n, :width - 1]]
        codes[np.arange(n), lengths] = ord("\n")
        text = codes[np.arange(width) <= lengths[:, None]].tobytes().decode("utf-32-le")
        return text.split("\n")[:-1]


class SmallRound:
    """A generate job's round in the scalar lane: its names' results, filled in as they end."""

    __slots__ = ("job", "names", "logprobs", "cut", "left")

    def __init__(self, job: RoundsJob, n: int):
        self.job = job
        self.names = [""] * n
        self.logprobs = [0.0] * n
        self.cut = [False] * n
        self.left = n  # its names not yet ended


class Walker:
    """One active name of the scalar lane."""

    __slots__ = ("round", "index", "key", "stream", "step", "steps", "logprob", "chars", "temperature", "top_k")

    def __init__(self, round: SmallRound, index: int, key: int, stream: int, steps: int, logprob: float,
                 temperature: float, top_k: int | None):
        self.round = round
        self.index = index  # its place in the round
        self.key = key  # its context key
        self.stream = stream  # its stream key
        self.step = 0  # characters drawn
        self.steps = steps  # characters it may draw
        self.logprob = logprob  # so far, the prefix's included
        self.chars: list[int] = []  # character ids drawn (the end not included)
        self.temperature = temperature
        self.top_k = top_k


class SmallLane:
    """The names of small generate jobs of one model version, stepped in plain Python: for a few
    names a step of dictionary lookups and bisections over flat views of the cache's tables costs
    less than the vectorised lane's fixed numpy calls. The misses of a step are still computed in one
    model call. Each name draws with `sampler.draw_one`, as `Engine.walk` does (the tests check
    both lanes against a reference loop)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.rows = engine.rows
        self.V = engine.vocab_size
        self.tail = self.V ** (engine.block_size - 1)
        self.names: list[Walker] = []
        self.rounds: dict[int, SmallRound] = {}  # by job id
        self.scores: list[ChunksJob] = []  # (always empty: /score jobs run in the vectorised lane)

    @property
    def idle(self) -> bool:
        return not self.rounds

    def __len__(self) -> int:
        return len(self.names)

    def add(self, job: RoundsJob) -> None:
        r = job.next_round()
        entry = self.rounds[job.id] = SmallRound(job, r.n)
        for i, stream in enumerate(r.skeys.tolist()):
            self.names.append(Walker(entry, i, r.start_key, stream, r.steps, r.base, job.temperature, job.top_k))

    def remove(self, job: RoundsJob) -> None:
        if self.rounds.pop(job.id, None) is not None:
            self.names = [w for w in self.names if w.round.job is not job]

    def step(self) -> list[Job]:
        V, tail, rows, cache = self.V, self.tail, self.rows, self.rows.cache
        where = []  # per name: (flat log-probabilities, flat CDFs, offset of its row)
        missing: dict[int, int] = {}
        for w in self.names:
            row = cache.row(w.key) if cache is not None else None
            if row is None:
                missing.setdefault(w.key, len(missing))
                where.append(None)
            else:
                where.append((cache.flat_logp, cache.flat_cdf, row * V))
        if missing:  # one model call for the step's misses
            logp_t, cdf_t, found = rows.add(np.fromiter(missing, np.int64, len(missing)))
            flat_logp, flat_cdf = memoryview(logp_t.reshape(-1)), memoryview(cdf_t.reshape(-1))
            found = found.tolist()
            where = [t if t is not None else (flat_logp, flat_cdf, found[missing[w.key]] * V)
                     for t, w in zip(where, self.names)]
        uniform, draw_one, vocab = sampler.uniform, sampler.draw_one, self.engine.vocab
        cache = rows.cache  # (the call may have renewed it)
        finished, keep = [], []
        for w, (flat_logp, flat_cdf, lo) in zip(self.names, where):
            while True:  # a name whose next context is cached draws on in this step: steps are spent on misses
                c = draw_one(flat_logp, flat_cdf, lo, V, uniform(w.stream, w.step), w.temperature, w.top_k)
                w.logprob += flat_logp[lo + c]
                w.step += 1
                if not c or w.step >= w.steps:
                    break
                w.chars.append(c)
                w.key = w.key % tail * V + c
                row = cache.row(w.key) if cache is not None else None
                if row is None:
                    break
                flat_logp, flat_cdf, lo = cache.flat_logp, cache.flat_cdf, row * V
            if c and w.step < w.steps:
                keep.append(w)
                continue
            if c:
                w.chars.append(c)
            entry, i = w.round, w.index
            entry.names[i] = "".join([vocab[k] for k in w.chars])
            entry.logprobs[i], entry.cut[i] = w.logprob, c != 0
            entry.left -= 1
            if not entry.left:
                job = entry.job
                del self.rounds[job.id]
                job.round_done(entry.names, entry.logprobs, entry.cut)
                if job.done:
                    finished.append(job)
                else:
                    self.add(job)  # its next round joins at the next step
        self.names = keep + self.names[len(where):]
        return finished


class InferLane:
    """The inference protocol's jobs of one model version: every job waiting at a step is answered
    by one model call on all their contexts together (each row computed the same whatever the batch)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.rounds: dict = {}  # never any: the batch's failure paths read rounds and scores of every lane
        self.scores: list[InferJob] = []  # the jobs waiting for the next step's call

    @property
    def idle(self) -> bool:
        return not self.scores

    def add(self, job: InferJob) -> None:
        self.scores.append(job)

    def remove(self, job: InferJob) -> None:
        if job in self.scores:
            self.scores.remove(job)

    def step(self) -> list[Job]:
        jobs, self.scores = self.scores, []
        contexts = jobs[0].contexts if len(jobs) == 1 else np.concatenate([j.contexts for j in jobs])
        logits = self.engine.rows.logits(contexts)  # (sum of n, V) float32
        start = 0
        for job in jobs:
            job.take(logits[start:start + len(job.contexts)])
            start += len(job.contexts)
        return jobs


INFER = "infer"  # the lane key's kind for inference-protocol jobs (True/False: scalar or vectorised lane)


class Batch:
    """Jobs waiting and running, stepped together; one lane per model version (and kind)."""

    def __init__(self, step_names: int = STEP_NAMES):
        self.step_names = step_names
        self.lanes: dict[tuple[int, bool | str], Lane | SmallLane | InferLane] = {}  # (id(engine), kind) -> lane
        self.waiting: deque[Job] = deque()
        self.running = 0  # weight of the jobs in lanes

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def submit(self, job: Job) -> None:
        self.waiting.append(job)

    def cancel(self, job: Job) -> None:
        if job in self.waiting:
            self.waiting.remove(job)
            return
        for lane in [self.lanes.get((id(job.engine), kind)) for kind in (True, False, INFER)]:
            if lane is not None and (job.id in lane.rounds or job in lane.scores):
                lane.remove(job)
                self.running -= job.weight
                return

    def step(self) -> list[Job]:
        """Admit waiting jobs (in order, while the step has room), step every lane; the finished jobs.
        A small job alone in the batch runs to its end at once, one name at a time: with nothing to
        share a step with, plain Python beats numpy calls on tiny arrays."""
        if not self.lanes and len(self.waiting) == 1 and self.waiting[0].small:
            job = self.waiting.popleft()
            try:
                job.run_alone()
            except Exception as e:
                job.fail(e)
            return [job]
        finished = []
        while self.waiting and (not self.running or self.running + self.waiting[0].weight <= self.step_names):
            job = self.waiting.popleft()
            lane = self._lane(job)
            try:
                lane.add(job)  # (a prefix's rows may need the model)
            except Exception as e:
                job.fail(e)
                finished.append(job)
                continue
            self.running += job.weight
        for key, lane in list(self.lanes.items()):
            try:
                done = lane.step()
            except Exception as e:  # e.g. the model failed: every job of this lane fails with it
                for job in [r.job for r in lane.rounds.values()] + lane.scores:
                    job.fail(e)
                    finished.append(job)
                    self.running -= job.weight
                del self.lanes[key]
                continue
            for job in done:
                self.running -= job.weight
            finished += done
            if lane.idle:
                del self.lanes[key]
        return finished

    def _lane(self, job: Job) -> Lane | SmallLane | InferLane:
        """A small generate job joins its model version's scalar lane while that lane holds fewer
        than SMALL_STEP names; an inference-protocol job its version's infer lane; every other job
        the vectorised lane."""
        if job.kind == "infer":
            lane = self.lanes.get((id(job.engine), INFER))
            if lane is None:
                lane = self.lanes[(id(job.engine), INFER)] = InferLane(job.engine)
            return lane
        small = self.lanes.get((id(job.engine), True))
        if job.kind == "generate" and job.small and (small is None or len(small) < SMALL_STEP):
            if small is None:
                small = self.lanes[(id(job.engine), True)] = SmallLane(job.engine)
            return small
        lane = self.lanes.get((id(job.engine), False))
        if lane is None:
            lane = self.lanes[(id(job.engine), False)] = Lane(job.engine)
        return lane

    def run(self, job: Job) -> Any:
        """Step until `job` is done (the synchronous path: tests, benchmarks, the self-test)."""
        self.submit(job)
        while not job.done:
            self.step()
        return job.outcome()


class Scheduler:
    """One per worker: steps the worker's Batch on the event loop while any job is in it.

    The step runs on the event loop itself: with one worker per core a thread adds no compute, only
    a hand-off per request (docs/service.md has the measured costs). Between steps the loop serves
    sockets, so new requests join and /healthz answers within one step's time."""

    def __init__(self, step_names: int = STEP_NAMES):
        self.batch = Batch(step_names)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="namegen-scheduler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def run(self, job: Job) -> Any:
        """The job's result, once its last name has ended; a cancelled caller's job leaves the batch."""
        if self._task is None:
            self.start()
        job.future = asyncio.get_running_loop().create_future()
        self.batch.submit(job)
        self._wake.set()
        try:
            await job.future
        except asyncio.CancelledError:
            self.batch.cancel(job)
            raise
        return job.outcome()

    def cancel(self, job: Job, error: BaseException) -> None:
        """Take a job's names out of the batch; its caller gets `error`."""
        self.batch.cancel(job)
        if job.future is not None and not job.future.done():
            job.future.set_exception(error)

    async def _loop(self) -> None:
        batch = self.batch
        while True:
            if batch.idle:
                self._wake.clear()
                await self._wake.wait()
                await asyncio.sleep(0)  # requests that arrived together join the first step together
            try:
                finished = batch.step()
            except Exception as e:  # a bug, not a model error (those fail their lane's jobs): fail everything, keep serving
                log.exception("scheduler step failed")
                finished = [*batch.waiting, *[r.job for lane in batch.lanes.values() for r in lane.rounds.values()],
                            *[job for lane in batch.lanes.values() for job in lane.scores]]
                for job in finished:
                    job.fail(e)
                batch.waiting.clear()
                batch.lanes.clear()
                batch.running = 0
            for job in finished:
                if job.future is not None and not job.future.done():
                    job.future.set_result(None)
            for _ in range(STEP_PASSES):  # the loop's passes between steps: see STEP_PASSES
                await asyncio.sleep(0)
