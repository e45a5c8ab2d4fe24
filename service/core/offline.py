"""The synchronous API: one request stepped on a batch of its own, off the event loop (tests,
benchmarks, the reload's self-test). The same jobs and the same scheduler core as served traffic,
so the same results."""
from __future__ import annotations

from service.core.constraints import ATTEMPTS_PER_NAME, SECONDS, Constraints
from service.core.engine import Engine
from service.core.jobs import Generation, GenerateJob, Score, ScoreJob
from service.core.scheduler import Batch


def generate(engine: Engine, count: int, seed: int, temperature: float = 1.0, top_k: int | None = None,
             prefix: str = "", max_length: int = 32, novel_only: bool = False,
             per_name: int = ATTEMPTS_PER_NAME, constraints: Constraints | None = None, case: str = "lower",
             seconds: float | None = SECONDS) -> Generation:
    """`count` names from streams 0, 1, 2, ... of `seed`. With constraints (novel_only among them),
    names that fail one are skipped and later streams are tried, until `per_name` streams in a row are
    refused or `seconds` have passed; the result may then hold fewer names."""
    job = GenerateJob(engine, count, seed, temperature, top_k, prefix, max_length, novel_only, per_name,
                      constraints, case, seconds)
    return Batch().run(job)


def score(engine: Engine, names: list[str]) -> list[Score]:
    """Per name: log-probability of each character and of the end '.', their sum, and whether
    the name is in the training corpus."""
    if not names:
        return []
    job = ScoreJob(engine, names)
    job.run_alone()
    return job.scores()
