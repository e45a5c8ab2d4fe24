"""The default model's configuration trained on the lecture's names.txt with the lecture's split, its
val and test loss printed beside the lecture's references. A benchmark, not a test.

    .venv/bin/python bench/quality.py --data ../shared/data/names.txt

The run is `python -m training train --config configs/default.toml --data ...`, exactly what
`make default-model` runs on the default corpus, so the numbers speak for the shipped model's recipe.
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
from training.model import ModelConfig, NameMLP  # noqa: E402

# (what, params, val, test) on names.txt: GUIDE section 1.
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
    parser.add_argument("--target", type=float, default=1.95, help="val loss to reach")
    args = parser.parse_args(argv)

    cmd = [sys.executable, "-m", "training", "train", "--config", args.config, "--data", args.data,
           "--out", args.out, "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"training failed ({done.returncode}): {' '.join(cmd)}")
    wall = time.perf_counter() - started
    metrics = json.loads((ROOT / args.out / "metrics.json").read_text())
    saved = json.loads((ROOT / args.out / "config.json").read_text())
    members = saved["train"].get("members", 1)
    params = NameMLP(ModelConfig(**saved["model"])).num_params() * members

    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    print(f"\n| model | params | val | test |\n|---|---|---|---|")
    for what, n, val, test in REFERENCES:
        print(f"| {what} | {n} | {fmt(val)} | {fmt(test)} |")
    what = f"{members} members, mean logits" if members > 1 else f"{metrics['statistics']} statistics"
    print(f"| ours: {args.config} ({what}) | {params:,} | "
          f"{fmt(metrics['val_loss'])} | {fmt(metrics['test_loss'])} |")
    for k, m in enumerate(metrics.get("members", [])):
        print(f"member {k} (seed {m['seed']}): train {m['train']:.4f}, val {m['val']:.4f}, test {m['test']:.4f}")
    print(f"\ntrain {metrics['train_loss']:.4f}; wall time {wall:.0f} s (training {metrics.get('seconds', 0):.0f} s)")
    ok = metrics["val_loss"] <= args.target
    print(f"target val <= {args.target}: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
