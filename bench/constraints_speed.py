"""A rare constraint against none on the shipped model, side by side in one run: does a suffix that
about 1% of the model's names end with fill count=100 within the budget, and at what names/s?

    .venv/bin/python bench/constraints_speed.py [--suffix son] [--requests 20]

In process (the scheduler's own Batch, as a served request runs): each request is count=100 with its
own seed; the unconstrained and constrained requests alternate so load on a shared machine falls on
both. The Markdown table goes to its own section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from artifact.loader import load_current  # noqa: E402
from service.core import offline  # noqa: E402
from service.core.constraints import Constraints  # noqa: E402
from service.core.engine import Engine  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- constraints_speed: begin -->", "<!-- constraints_speed: end -->"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


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
    table = "\n".join("| " + " | ".join(r) + " |" for r in [header, tuple("---" for _ in header), *rows])
    command = "python bench/constraints_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = (f"{BEGIN}\n## Constraints: a rare suffix against none\n\n"
               f"{args.requests} requests of count=100 each (one seed per request, the two kinds alternating), "
               f"in process on the scheduler's Batch, model {engine.name}/{engine.version}.\n\n{table}\n\n"
               f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu_name()}, "
               f"{os.cpu_count()} cores (shared), with `{command.strip()}`.\n{END}\n")
    print(section)
    if not args.no_doc:
        text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nTables written by the scripts in bench/.\n\n"
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
        DOC.write_text(text)
    return 0 if constrained["exhausted"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
