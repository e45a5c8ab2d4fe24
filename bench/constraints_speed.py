"""A rare constraint against none on the shipped model, side by side in one run: does a suffix that
about 1% of the model's names end with fill count=100 within the budget, and at what names/s?

    .venv/bin/python bench/constraints_speed.py [--suffix son] [--requests 20]

In process (the scheduler's own Batch, as a served request runs): each request is count=100 with its
own seed; the unconstrained and constrained requests alternate so load on a shared machine falls on
both. The Markdown table goes to its own section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from artifact.loader import load_current  # noqa: E402
from bench import report  # noqa: E402
from service.core import offline  # noqa: E402
from service.core.constraints import Constraints  # noqa: E402
from service.core.engine import Engine  # noqa: E402



def run(engine: Engine, seeds: list[int], constraints: Constraints | None) -> dict:
    names = attempts = exhausted = 0
    seconds = 0.0
    for seed in seeds:
        t = time.perf_counter()
        gen = offline.generate(engine, count=100, seed=seed, constraints=constraints)
        seconds += time.perf_counter() - t
        names += len(gen.names)
        attempts += gen.attempts
        exhausted += gen.exhausted
    return {"names": names, "attempts": attempts, "exhausted": exhausted, "seconds": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default=str(ROOT / "models"))
    parser.add_argument("--name", default="names")
    parser.add_argument("--suffix", default="son", help="a rare ending (about 1%% of the shipped model's names)")
    parser.add_argument("--requests", type=int, default=20, help="count=100 requests of each kind")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)

    engine = Engine(load_current(args.registry, args.name))
    engine.warm()
    rare = Constraints(suffix=args.suffix)
    offline.generate(engine, count=100, seed=0, constraints=rare)  # the rows the suffix's names visit, cached
    plain, constrained = {}, {}
    for seed in range(1, args.requests + 1):  # alternating: the machine's noise falls on both
        for result, c in ((plain, None), (constrained, rare)):
            for k, v in run(engine, [seed], c).items():
                result[k] = result.get(k, 0) + v
    rate_plain = plain["names"] / plain["seconds"]
    rate = constrained["names"] / constrained["seconds"]
    accept = constrained["names"] / constrained["attempts"]
    rows = [
        ("none", f"{plain['names']}", f"{plain['attempts']}", "100%", f"{plain['exhausted']}",
         f"{rate_plain:,.0f}", "1.00"),
        (f"suffix={args.suffix!r}", f"{constrained['names']}", f"{constrained['attempts']}", f"{100 * accept:.2f}%",
         f"{constrained['exhausted']}", f"{rate:,.0f}", f"{rate / rate_plain:.3f}"),
    ]
    header = ("constraint", "names", "attempts", "accepted", "exhausted requests", "names/s", "vs none")
    section = (f"## Constraints: a rare suffix against none (bench/constraints_speed.py)\n\n"
               f"{args.requests} requests of count=100 each (one seed per request, the two kinds alternating), "
               f"in process on the scheduler's Batch, model {engine.name}/{engine.version}. "
               f"{report.machine(argv)}\n\n{report.table(header, rows)}\n")
    print(section)
    if not args.no_doc:
        report.write_section("constraints_speed", section)
    return 0 if constrained["exhausted"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
