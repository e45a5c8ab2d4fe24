"""Admission per worker, counted in work (names requested, or names to score), not in requests,
and the path of an admitted request through the worker's scheduler.

The budget is max_in_flight x the largest request (`max_count`, `max_score_names`): a client that
keeps at most max_in_flight requests in flight per worker is never refused, whatever their sizes,
while many small requests (count=1) are not held to the number a few large ones need. Beyond the
budget a request is refused with 503 + Retry-After after a short pause: clients that retry at once
(load generators do) then cost the worker a bounded share of its time, which the admitted work
keeps."""
from __future__ import annotations

import asyncio
from typing import Any

from fastapi import HTTPException, Request

from service.api import limits
from service.core.jobs import Job
from service.core.scheduler import Scheduler
from service.ops.metrics import Metrics

SHED_PAUSE = 1.0  # seconds a refused request waits before its 503 (as long as its Retry-After asks)
WATCH_WEIGHT = 8  # jobs of at least this weight stop when their client goes away (smaller ones end within a few steps)


class Abandoned(Exception):
    """The client went away before its job finished."""


class Gate:
    """Work admitted and requests in flight in this worker. Touched only from the event loop thread."""

    def __init__(self, budget: int):
        self.budget = budget
        self.load = 0  # weight of the jobs admitted and not yet finished
        self.requests = 0

    def admit(self, weight: int) -> bool:
        if self.load + weight > self.budget and self.load:
            return False
        self.load += weight
        self.requests += 1
        return True

    def release(self, weight: int) -> None:
        self.load -= weight
        self.requests -= 1


async def run_job(request: Request, job: Job) -> Any:
    """Admit the job (else 503), run it through the worker's scheduler, and stop it if the client
    disconnects first (then Abandoned)."""
    state = request.app.state
    gate: Gate = state.gate
    metrics: Metrics = state.metrics
    limits.charge(request.scope, job.weight)  # 429 when the client is over its rate
    if not gate.admit(job.weight):
        limits.refund(request.scope, job.weight)
        metrics.busy.inc()
        await asyncio.sleep(SHED_PAUSE)
        raise HTTPException(503, f"busy: this worker has {gate.load} names of work in flight "
                                 f"(budget {gate.budget})", headers={"Retry-After": "1"})
    metrics.set_in_flight(gate.requests)
    scheduler: Scheduler = state.scheduler
    watcher = None
    try:
        if job.weight >= WATCH_WEIGHT:
            watcher = asyncio.ensure_future(_watch(request, scheduler, job))
        return await scheduler.run(job)
    finally:
        if watcher is not None:
            watcher.cancel()
        gate.release(job.weight)
        metrics.set_in_flight(gate.requests)


async def _watch(request: Request, scheduler: Scheduler, job: Job) -> None:
    """Wait for the client to disconnect (the body is already read), then take the job's names out."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            scheduler.cancel(job, Abandoned())
            return
