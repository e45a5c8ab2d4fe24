"""The scheduler changes no result: any mix of requests, joining at any step, some cancelled, gives
each request exactly what the engine gives it alone (itself checked against a plain reference loop
in test_engine.py)."""
import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service_helpers import SHIPPED

from artifact.loader import load_version
from service.core import offline
from service.core.constraints import Constraints
from service.core.engine import Engine
from service.core.jobs import GenerateJob, InferJob, ScoreJob
from service.core.scheduler import Batch, Scheduler


@pytest.fixture(scope="module")
def engines(loaded_model):
    """Dense cache, a small dictionary cache that renews itself often, and no cache."""
    return {"dense": Engine(loaded_model, cache_rows=27 ** 3), "dict": Engine(loaded_model, cache_rows=300),
            "none": Engine(loaded_model, cache_rows=0)}


generate_params = st.fixed_dictionaries({
    "count": st.integers(1, 30),
    "seed": st.integers(0, 2 ** 63 - 1),
    "temperature": st.sampled_from([1.0, 1.0, 0.5, 2.0, 1e-6]),
    "top_k": st.sampled_from([None, None, 1, 3, 27]),
    "prefix": st.sampled_from(["", "", "a", "ma", "zq"]),
    "max_length": st.integers(3, 12),
    "novel_only": st.booleans(),
    "constraints": st.one_of(st.none(), st.builds(
        Constraints, min_length=st.sampled_from([0, 5]), suffix=st.sampled_from(["", "a", "n"]),
        contains=st.sampled_from(["", "e"]), exclude=st.sampled_from([frozenset(), frozenset({"emma", "ava"})]),
        unique=st.booleans())),
    "case": st.sampled_from(["lower", "title"]),
    "seconds": st.just(None),  # the time budget would make a slow run's answer shorter
})
score_names = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", max_size=12), min_size=1, max_size=20)
request = st.one_of(generate_params, score_names)
schedule = st.lists(st.tuples(request, st.integers(0, 6), st.sampled_from([None, None, None, 0, 1, 3])),
                    min_size=1, max_size=8)


def alone(engine, req):
    if isinstance(req, dict):
        return offline.generate(engine, **req)
    return [(s.name, s.logprob, s.per_char, s.in_corpus) for s in offline.score(engine, req)]


def outcome(job):
    result = job.outcome()
    if isinstance(job, ScoreJob):
        return [(s.name, s.logprob, s.per_char, s.in_corpus) for s in result.scores()]
    return result


def make_job(engine, req):
    return GenerateJob(engine, **req) if isinstance(req, dict) else ScoreJob(engine, req)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=schedule, cache=st.sampled_from(["dense", "dict", "none"]), step_names=st.sampled_from([2048, 16]))
def test_any_interleaving_gives_each_request_its_own_result(engines, plan, cache, step_names):
    """plan: (request, step it joins at, steps after joining it is cancelled at or None)."""
    engine = engines[cache]
    batch = Batch(step_names=step_names)
    jobs = [make_job(engine, req) for req, _, _ in plan]
    joins = {i: at for i, (_, at, _) in enumerate(plan)}
    cancels = {i: at + after for i, (_, at, after) in enumerate(plan) if after is not None}
    cancelled = set()
    step = 0
    while step <= max(joins.values()) or not batch.idle:
        for i, job in enumerate(jobs):
            if joins[i] == step:
                batch.submit(job)
            if cancels.get(i) == step and not job.done:
                batch.cancel(job)
                cancelled.add(i)
        batch.step()
        step += 1
        assert step < 10_000
    for i, (req, _, _) in enumerate(plan):
        if i in cancelled:
            continue
        assert jobs[i].done
        assert outcome(jobs[i]) == alone(engine, req)
    assert batch.running == 0 and not batch.lanes


class Counting:
    """A runtime that records the rows of each model call."""

    def __init__(self, runtime, calls: list):
        self.vocab, self.block_size, self.inner, self.calls = runtime.vocab, runtime.block_size, runtime, calls

    def run(self, contexts):
        self.calls.append(len(contexts))
        return self.inner.run(contexts)


def test_two_versions_step_side_by_side(loaded_model):
    """During a reload requests of the old and the new engine share the batch: one lane each."""
    old, new = Engine(loaded_model), Engine(loaded_model, cache_rows=500)
    batch = Batch()
    jobs = [GenerateJob(e, count=12, seed=s) for s, e in enumerate([old, new, old, new])]
    for job in jobs:
        batch.submit(job)
    batch.step()
    assert len(batch.lanes) == 2
    while not batch.idle:
        batch.step()
    for s, (job, e) in enumerate(zip(jobs, [old, new, old, new])):
        assert job.outcome() == offline.generate(e, count=12, seed=s)


def run_to_end(batch, jobs) -> int:
    """Submit the jobs and step until the batch is idle; the number of steps."""
    for job in jobs:
        batch.submit(job)
    steps = 0
    while not batch.idle:
        batch.step()
        steps += 1
    return steps


def test_a_step_makes_at_most_one_model_call_for_all_requests(loaded_model):
    calls = []
    from service.core.runtime import OnnxRuntime
    engine = Engine(loaded_model, cache_rows=0, runtime=Counting(OnnxRuntime(loaded_model), calls))
    batch = Batch()
    jobs = [GenerateJob(engine, count=5, seed=s, prefix="") for s in range(10)] + [ScoreJob(engine, ["anna", "bob"])]
    steps = run_to_end(batch, jobs)
    assert len(calls) == steps
    # all 50 names share the start context '...', which the score rows have too: 1 + 3 + 4 distinct
    assert calls[0] == len({"...", "..a", ".an", "ann", "nna", "..b", ".bo", "bob"})
    for s, job in enumerate(jobs[:10]):
        assert job.outcome() == offline.generate(engine, count=5, seed=s)


def test_small_requests_spend_steps_only_on_cache_misses(loaded_model):
    """A name draws on within a step while its next context is cached: with every context cached,
    small requests are answered in one step, by no model call, with the names they get alone."""
    from service.core.runtime import OnnxRuntime
    calls = []
    engine = Engine(loaded_model, cache_rows=27 ** 3, runtime=Counting(OnnxRuntime(loaded_model), calls))
    engine.rows.lookup(np.arange(27 ** 3))  # every context of the dense cache
    before = len(calls)
    batch = Batch()
    jobs = [GenerateJob(engine, count=3, seed=s, max_length=20) for s in (8, 9)]  # two: they share the scalar lane
    assert run_to_end(batch, jobs) == 1 and len(calls) == before
    alone = Engine(loaded_model, cache_rows=0)
    assert [j.outcome() for j in jobs] == [offline.generate(alone, count=3, seed=s, max_length=20) for s in (8, 9)]


def test_a_long_request_does_not_hold_short_ones_back(engines):
    engine = engines["dense"]
    batch = Batch()
    long = GenerateJob(engine, count=200, seed=1, max_length=60, temperature=3.0)
    batch.submit(long)
    batch.step()
    short = GenerateJob(engine, count=2, seed=2, max_length=4)
    batch.submit(short)
    for _ in range(4):  # joins at the next step and needs at most max_length steps
        batch.step()
    assert short.done and not long.done
    assert short.outcome() == offline.generate(engine, count=2, seed=2, max_length=4)


def test_a_cancelled_request_leaves_at_the_next_step(engines):
    engine = engines["dense"]
    batch = Batch()
    gone = GenerateJob(engine, count=300, seed=3, max_length=60, temperature=5.0)
    stay = GenerateJob(engine, count=7, seed=4, max_length=60, temperature=5.0)
    batch.submit(gone)
    batch.submit(stay)
    batch.step()
    lane = next(iter(batch.lanes.values()))
    assert len(lane.key) > 250  # (a name may end at its first character)
    batch.cancel(gone)
    assert 0 < len(lane.key) <= 7
    assert set(lane.arena.owner[lane.slot].tolist()) == {stay.id}
    assert batch.running == 7
    while not batch.idle:
        batch.step()
    assert not gone.done
    assert stay.outcome() == offline.generate(engine, count=7, seed=4, max_length=60, temperature=5.0)


def test_scheduler_serves_concurrent_callers_and_drops_an_abandoned_one(engines):
    engine = engines["dict"]

    async def scenario():
        scheduler = Scheduler()
        scheduler.start()
        try:
            reqs = [dict(count=c, seed=c * 7, temperature=t) for c, t in [(1, 1.0), (50, 1.5), (3, 0.7), (200, 1.0)]]
            jobs = [GenerateJob(engine, **r) for r in reqs]
            abandoned = GenerateJob(engine, count=500, seed=9, max_length=64, temperature=8.0)
            tasks = [asyncio.create_task(scheduler.run(j)) for j in jobs + [abandoned]]
            await asyncio.sleep(0)
            scheduler.cancel(abandoned, ConnectionError("gone"))
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(results[-1], ConnectionError)
            assert scheduler.batch.idle
            return reqs, results[:-1]
        finally:
            await scheduler.close()

    reqs, results = asyncio.run(scenario())
    for r, got in zip(reqs, results):
        assert got == offline.generate(engine, **r)


def test_score_in_chunks_equals_score_at_once(engines, loaded_model):
    engine = engines["dense"]
    names = sorted(loaded_model.corpus_names)[:700] + ["", "q" * 40]
    job = ScoreJob(engine, names)
    chunks = 0
    while not job.done:
        keys, targets = job.chunk()
        logp, _, rows = engine.rows.lookup(keys)
        job.take(logp[rows, targets])
        chunks += 1
    assert chunks > 1
    for s, name in zip(job.scores(), names):
        lp = engine.rows.logp_rows(np.lib.stride_tricks.sliding_window_view(
            np.array([0] * 3 + engine.encode(name), dtype=np.int64), 3))
        expected = 0.0
        for v in lp[np.arange(len(name) + 1), engine.encode(name) + [0]].tolist():
            expected += v
        assert s.logprob == expected


def test_a_failing_model_fails_its_requests_and_the_scheduler_serves_on(loaded_model):
    from service.core.runtime import OnnxRuntime

    class Flaky:
        def __init__(self, runtime):
            self.vocab, self.block_size, self.inner, self.broken = runtime.vocab, runtime.block_size, runtime, True

        def run(self, contexts):
            if self.broken:
                raise RuntimeError("model failed")
            return self.inner.run(contexts)

    runtime = Flaky(OnnxRuntime(loaded_model))
    engine = Engine(loaded_model, cache_rows=0, runtime=runtime)

    async def scenario():
        scheduler = Scheduler()
        scheduler.start()
        try:
            failed = await asyncio.gather(scheduler.run(GenerateJob(engine, count=20, seed=1)),
                                          scheduler.run(GenerateJob(engine, count=2, seed=1, prefix="ab")),
                                          scheduler.run(ScoreJob(engine, ["anna"])), return_exceptions=True)
            runtime.broken = False
            return failed, await scheduler.run(GenerateJob(engine, count=20, seed=1))
        finally:
            await scheduler.close()

    failed, ok = asyncio.run(scenario())
    assert [str(e) for e in failed] == ["model failed"] * 3
    assert ok == offline.generate(engine, count=20, seed=1)


@pytest.fixture(scope="module")
def three_models(loaded_model):
    """Three models with their own weights (the trained one and the repository's two versions),
    all stepped by one batch."""
    shipped = [load_version(p) for p in sorted(SHIPPED.iterdir()) if p.is_dir()]
    return [Engine(loaded_model), Engine(shipped[0], cache_rows=300), Engine(shipped[1], cache_rows=0)]


def infer_request(engine, n, seed):
    return np.random.default_rng(seed).integers(0, engine.vocab_size, size=(n, engine.block_size), dtype=np.int64)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.integers(0, 2), st.one_of(request, st.integers(1, 40)), st.integers(0, 4)),
                     min_size=2, max_size=9))
def test_several_models_in_one_batch_each_get_their_own_result(three_models, plan):
    """plan: (model, request or infer rows, step it joins at). Names of different models never mix:
    each request gets what its own model gives it alone, whatever shares its steps."""
    batch = Batch()
    jobs = [InferJob(three_models[m], infer_request(three_models[m], req, i)) if isinstance(req, int)
            else make_job(three_models[m], req) for i, (m, req, _) in enumerate(plan)]
    step = 0
    while step <= max(at for _, _, at in plan) or not batch.idle:
        for job, (_, _, at) in zip(jobs, plan):
            if at == step:
                batch.submit(job)
        batch.step()
        step += 1
    for i, (job, (m, req, _)) in enumerate(zip(jobs, plan)):
        engine = three_models[m]
        if isinstance(req, int):
            assert np.array_equal(job.outcome(), engine.rows.runtime.run(infer_request(engine, req, i)))
        else:
            assert outcome(job) == alone(engine, req)
    assert batch.running == 0 and not batch.lanes


def test_protocol_requests_of_a_version_share_one_model_call_per_step(loaded_model):
    calls = []
    from service.core.runtime import OnnxRuntime
    runtime = OnnxRuntime(loaded_model)
    engine = Engine(loaded_model, runtime=Counting(runtime, calls))
    batch = Batch()
    jobs = [InferJob(engine, infer_request(engine, n, n)) for n in (16, 1, 5, 16)]
    for job in jobs:
        batch.submit(job)
    batch.step()
    assert calls == [38] and all(job.done for job in jobs)
    for job in jobs:
        assert np.array_equal(job.outcome(), runtime.run(job.contexts))
