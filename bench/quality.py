"""The default recipe trained on the lecture's names.txt with the lecture's split: the teacher's and
the student's val and test loss printed beside the lecture's references. A benchmark, not a test.

    .venv/bin/python bench/quality.py --data names.txt

The run is `python -m training train --config configs/default.toml --data ...`, exactly what
`make default-model` runs on the default corpus (the teacher, then its student), so the numbers speak
for the shipped model's recipe. --resume continues an interrupted run (or reports a finished one).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
from training.model import ModelConfig, NameMLP  # noqa: E402
from training.rundir import read_metrics  # noqa: E402

# (what, params, val, test) on names.txt, as the lectures and makemore's README report them.
REFERENCES = [
    ("makemore part 3, model A with BatchNorm", "12K", 2.1048, None),
    ("makemore part 5, hierarchical (WaveNet) MLP", "76K", 1.993, None),
    ("makemore's transformer (reported)", "200K", None, 1.92),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the lecture's names.txt")
    parser.add_argument("--config", default="configs/default.toml", help="training configuration")
    parser.add_argument("--out", default="runs/quality-names-txt", help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue (or just report) the run in --out")
    parser.add_argument("--target", type=float, default=1.940, help="val loss the shipped single model must reach")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)

    cmd = [sys.executable, "-m", "training", "train", "--out", args.out, "--no-progress"]
    cmd += ["--resume"] if args.resume else ["--config", args.config, "--data", args.data]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"training failed ({done.returncode}): {' '.join(cmd)}")
    wall = time.perf_counter() - started
    out = ROOT / args.out
    rows = [(f"ours: {args.config}", out)]
    if (out / "teacher" / "metrics.json").is_file():
        rows = [(f"ours: teacher of {args.config}", out / "teacher"), (f"ours: its student", out)]

    say = report.Lines()
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    say(f"\n| model | params | val | test |\n|---|---|---|---|")
    for what, n, val, test in REFERENCES:
        say(f"| {what} | {n} | {fmt(val)} | {fmt(test)} |")
    for what, run_dir in rows:
        metrics = read_metrics(run_dir)
        saved = json.loads((run_dir / "config.json").read_text())
        members = metrics["members"]
        params = NameMLP(ModelConfig(**saved["model"])).num_params() * len(members)
        kind = (f"mean logits of {len(members)} member(s), "
                f"{'/'.join(sorted({m['statistics'] for m in members}))} statistics")
        say(f"| {what} ({kind}) | {params:,} | {fmt(metrics['val_loss'])} | {fmt(metrics['test_loss'])} |")
    for what, run_dir in rows:
        metrics = read_metrics(run_dir)
        for k, m in enumerate(metrics["members"]):
            say(f"- {what}: member {k} (seed {m['seed']}): train {m['train']:.4f}, val {m['val']:.4f}, "
                f"test {m['test']:.4f}")
        say(f"- {what}: train {metrics['train_loss']:.4f}; training loop {metrics.get('seconds', 0):.0f} s")
    say(f"\nwall time {wall:.0f} s (this command{', resumed' if args.resume else ''})")
    single = read_metrics(out)
    ok = len(single["members"]) == 1 and single["val_loss"] <= args.target
    say(f"target: one foldable single model at val <= {args.target}: {'met' if ok else 'MISSED'} "
        f"({single['val_loss']:.4f})")
    if not args.no_doc:
        report.write_section("quality", "## The default recipe on the lecture's names.txt (bench/quality.py)\n\n"
                                        f"{report.machine(argv)}\n\n{say.text.strip()}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
