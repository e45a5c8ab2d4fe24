"""onnxruntime cost per row of two exported graphs, timed side by side in one run (interleaved rounds,
one thread each, the same random contexts), at batch 1 and batch 256, with the multiply-adds per row
and the node count of each. A benchmark, not a test.

    .venv/bin/python bench/graph_cost.py --before models/names/20261125T133006Z-72d274 --after models/names

A graph is named by a version directory, REGISTRY/NAME (its CURRENT version) or a model.onnx file.
For a version, its manifest's verification figures (folded vs unfolded, onnxruntime vs torch, over the
whole val set) are printed too.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import report  # noqa: E402

BATCHES = (1, 256)


def resolve(path: str) -> tuple[Path, dict | None]:
    """(model.onnx, manifest dict or None) for a version dir, REGISTRY/NAME or an .onnx file."""
    p = Path(path)
    if (p / "CURRENT").is_file():
        p = p / (p / "CURRENT").read_text().strip()
    if p.is_dir():
        return p / "model.onnx", json.loads((p / "manifest.json").read_text())
    return p, None


def macs_per_row(model: onnx.ModelProto, block_size: int) -> int:
    """Multiply-adds of every Gemm and MatMul for one context (shapes inferred at batch 1)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*m.graph.value_info, *m.graph.input, *m.graph.output]}
    shapes.update({i.name: list(i.dims) for i in m.graph.initializer})
    total = 0
    for node in m.graph.node:
        if node.op_type in ("Gemm", "MatMul"):
            a, w = shapes[node.input[0]], shapes[node.input[1]]
            total += int(np.prod(a[:-1])) * a[-1] * w[-1]
    return total


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def time_per_row(sess: ort.InferenceSession, x: np.ndarray, seconds: float) -> float:
    """Mean microseconds per row over as many calls as fit in `seconds`."""
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)  # warm
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        sess.run(None, feed)
        calls += 1
    return elapsed / calls / len(x) * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="version dir, REGISTRY/NAME or model.onnx")
    parser.add_argument("--after", required=True, help="version dir, REGISTRY/NAME or model.onnx")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the median is reported)")
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per graph, batch and round")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)

    graphs = {}
    for label in ("before", "after"):
        path, manifest = resolve(getattr(args, label))
        model = onnx.load(str(path))
        block_size = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
        graphs[label] = {"path": path, "manifest": manifest, "session": session(path), "block_size": block_size,
                         "vocab": model.graph.output[0].type.tensor_type.shape.dim[1].dim_value,
                         "macs": macs_per_row(model, block_size),
                         "nodes": collections.Counter(n.op_type for n in model.graph.node)}
    shapes = {(g["block_size"], g["vocab"]) for g in graphs.values()}
    if len(shapes) != 1:
        raise SystemExit(f"the graphs differ in (block size, vocab) {shapes}: nothing to compare")
    (block_size, vocab), = shapes
    rng = np.random.default_rng(0)
    xs = {b: rng.integers(0, vocab, (b, block_size)).astype(np.int64) for b in BATCHES}
    times = {(label, b): [] for label in graphs for b in BATCHES}
    for _ in range(args.rounds):  # interleaved: both graphs see the same machine load
        for b in BATCHES:
            for label, g in graphs.items():
                times[label, b].append(time_per_row(g["session"], xs[b], args.seconds))

    say = report.Lines()
    for label, g in graphs.items():
        m = g["manifest"] or {}
        val = m.get("metrics", {}).get("val")
        check = m.get("metrics", {}).get("verification") or {}
        say(f"- {label}: {g['path']}: {sum(g['nodes'].values())} nodes {dict(g['nodes'])}; "
            f"{g['macs']:,} multiply-adds per row; {g['path'].stat().st_size / 1e6:.2f} MB"
            + (f"; val {val:.4f}" if val is not None else "")
            + (f"; members {m['architecture']['members']}" if m else "")
            + (f"; teacher val {m['teacher']['val']:.4f}" if m.get("teacher") else ""))
        if check:
            say(f"  verification over {check['examples']:,} val contexts: folded vs unfolded "
                f"{check['fold_max_abs_diff']:.2g}, onnxruntime vs torch {check['onnx_max_abs_diff']:.2g}")
    say(f"\n| batch | before (us/row) | after (us/row) | after / before |\n|---|---|---|---|")
    for b in BATCHES:
        before, after = (statistics.median(times[label, b]) for label in ("before", "after"))
        say(f"| {b} | {before:.3f} | {after:.3f} | {after / before:.3f} |")
    ratio = graphs["after"]["macs"] / graphs["before"]["macs"]
    say(f"| multiply-adds per row | {graphs['before']['macs']:,} | {graphs['after']['macs']:,} | {ratio:.3f} |")
    say(f"\n(medians of {args.rounds} interleaved rounds, {args.seconds} s per graph, batch and round; "
        f"one onnxruntime thread)")
    if not args.no_doc:
        report.write_section("graph_cost", "## onnxruntime cost per row of two graphs (bench/graph_cost.py)\n\n"
                                           f"{report.machine(argv)}\n\n{say.text.strip()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
