"""The training loop of one model: schedule, minibatches, soft targets from a teacher, checkpoints,
BatchNorm calibration, diagnostics.

run(...) trains one model into a run directory (files: training.rundir) in named steps: build, start
or resume, loop, finish. With a teacher, the loss is Hinton et al.'s distillation loss
(distillation_loss); everything else (resume, diagnostics, calibration, the results) is the same as
for any run. The CLI then draws plots from diagnostics.json
(training.plots), keeping matplotlib out of here.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from training import diagnostics, rundir
from training.data import Splits
from training.config import ModelConfig, RecipeConfig, TrainConfig
from training.model import NameMLP
from training.rundir import save_atomic, write_json

BLOCK = 1000  # minibatches drawn at once: one randint and one gather per 1000 steps, not per step


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warmup, then sgd: the lecture's step decay (lr, then lr / 10); adamw: cosine to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.optimizer == "sgd":
        return cfg.lr / 10 if cfg.lr_decay_step and step >= cfg.lr_decay_step else cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


class SGD:
    """Plain SGD, the lecture's p -= lr * grad (plus weight decay), one foreach call per group. The same
    maths as torch.optim.SGD(foreach=True) without its per-step Python bookkeeping (hooks, profiler
    records, regrouping tensors), a large share of model A's step on one CPU thread (docs/training.md)."""

    def __init__(self, groups: list[dict], lr: float):
        self.param_groups = [{**g, "lr": lr} for g in groups]

    def zero_grad(self, set_to_none: bool = True):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = group["params"]
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            torch._foreach_add_(params, grads, alpha=-group["lr"])

    def state_dict(self) -> dict:
        return {}  # stateless: no momentum

    def load_state_dict(self, state: dict) -> None:
        pass


def make_optimizer(model: nn.Module, cfg: TrainConfig):
    # Decay only matrices (weights, embeddings), as nanoGPT does: shrinking BatchNorm's gain or a bias
    # towards 0 is not regularisation.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return SGD(groups if cfg.weight_decay else [{"params": decay + rest, "weight_decay": 0.0}], cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)


@torch.no_grad()
def evaluate(model: NameMLP, X: torch.Tensor, Y: torch.Tensor, chunk: int = 16384) -> float:
    """Mean cross-entropy over a whole split, in eval mode (BatchNorm uses its stored statistics)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for xb, yb in zip(X.split(chunk), Y.split(chunk)):
        logits, _ = model(xb)
        total += F.cross_entropy(logits, yb, reduction="sum").item()
    model.train(was_training)
    return total / len(Y)


@torch.no_grad()
def calibrate_batchnorm(model: NameMLP, X: torch.Tensor, chunk: int = 16384) -> None:
    """The lecture's calibration: set each BatchNorm's running mean/var to the statistics of its input
    over the whole training set, layer by layer in order (so each layer sees already calibrated inputs).
    For (B, T, C) inputs the statistics run over batch and positions, as in training."""
    was_training = model.training
    model.eval()
    layers = list(model.layers)
    for i, bn in enumerate(layers):
        if not isinstance(bn, nn.BatchNorm1d):
            continue
        n, total, total_sq = 0, 0.0, 0.0
        for xb in X.split(chunk):
            h = xb
            for layer in layers[:i]:
                h = layer(h)
            h = h.reshape(-1, h.shape[-1]).double()  # (rows, C); float64 sums for a 1-pass variance
            n += h.shape[0]
            total = total + h.sum(0)
            total_sq = total_sq + (h * h).sum(0)
        mean = total / n
        var = (total_sq - n * mean * mean) / (n - 1)  # unbiased, as torch keeps running_var
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var.clamp_min(0))
    model.train(was_training)


def minibatches(tensors: list[torch.Tensor], batch_size: int, seed: int, block: int) -> list:
    """The minibatches of steps [block * BLOCK, (block + 1) * BLOCK) of each tensor (the same rows of
    each), from a generator seeded by (seed, block): a resumed run draws exactly the same batches with
    no random state to save."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + block) % 2**64)
    ix = torch.randint(0, len(tensors[0]), (BLOCK, batch_size), generator=g)  # (BLOCK, B)
    return [t[ix].unbind(0) for t in tensors]  # per tensor, BLOCK views of (B, ...)


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's probabilities at `temperature`: (N, vocab) logits -> (N, vocab)."""
    return F.softmax(teacher_logits.double() / temperature, dim=-1).float()


def distillation_loss(logits: torch.Tensor, hard: torch.Tensor, soft: torch.Tensor, weight: float,
                      temperature: float):
    """Hinton et al.'s loss: weight x T^2 x the cross-entropy of the student's softmax at temperature T
    against the teacher's, plus (1 - weight) x the usual one (`hard`). The T^2 keeps the soft part's
    gradients the same size whatever T."""
    T = temperature
    soft_ce = -(soft * F.log_softmax(logits / T, dim=-1)).sum(-1).mean()  # (B, vocab) -> ()
    return weight * T * T * soft_ce + (1 - weight) * hard


@dataclass(frozen=True)
class Distillation:
    """A student's second target: its teacher's probabilities for every train example, and their share
    of the loss."""
    soft: torch.Tensor  # (N_train, vocab): the teacher's softmax at `temperature`, row i for train example i
    weight: float
    temperature: float
    teacher: dict  # {name, version, val, members, source}: what metrics.json records

    @classmethod
    def of(cls, teacher, recipe: RecipeConfig) -> Distillation:
        """From a training.teacher.Teacher and the recipe's weight and temperature."""
        T = recipe.distill_temperature
        return cls(soft_targets(teacher.logits, T), recipe.distill_weight, T, teacher.info)

    def loss(self, logits: torch.Tensor, hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        return distillation_loss(logits, hard, soft, self.weight, self.temperature)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm1d) for m in model.modules())


def write_config(run_dir: Path, preset: str | None, model_config: ModelConfig, cfg: TrainConfig, data_info: dict,
                 splits: Splits, recipe: RecipeConfig) -> None:
    write_json({"preset": preset, "model": model_config.to_dict(), "train": cfg.to_dict(),
                "recipe": recipe.to_dict(), "data": data_info,
                "vocab": splits.vocab.chars}, run_dir / rundir.CONFIG)


class TrainingInterrupted(Exception):
    """Ctrl-C during training: the checkpoint at `step` is saved; continue with resume."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; checkpoint saved to {checkpoint}")
        self.step, self.checkpoint = step, checkpoint

    def __reduce__(self):  # picklable, so a member trained in another process can report it
        return TrainingInterrupted, (self.step, self.checkpoint)


class StopFlag:
    """SIGINT sets a flag the loop checks between steps, so the checkpoint is always of whole steps.
    A second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def run(run_dir: str | Path, model_config: ModelConfig, train_config: TrainConfig, splits: Splits,
        data_info: dict, resume: bool = False, progress: bool = True, preset: str | None = None,
        log=print, distill: Distillation | None = None, recipe: RecipeConfig = RecipeConfig()) -> dict:
    """Train (or resume) one model into run_dir; returns metrics.json's content. With `distill`, the
    loss mixes a teacher's soft targets in. `recipe`: the recipe this run is part of, for config.json."""
    run_dir, cfg = Path(run_dir), train_config
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = NameMLP(model_config)
    optimizer = make_optimizer(model, cfg)
    probe = Probe.draw(splits.train, cfg)
    if resume:
        start, history = load_checkpoint(run_dir / rundir.CHECKPOINT, model, optimizer)
        log(f"resuming {run_dir} at step {start:,} of {cfg.steps:,}")
    else:
        start, history = 0, new_history(model, probe)
        write_config(run_dir, preset, model_config, cfg, data_info, splits, recipe)
    log_setup(model, cfg, splits, history, log)
    loop(run_dir, model, optimizer, cfg, splits, probe, history, start, distill, progress, log)
    return finish(run_dir, model, cfg, splits, history, distill)


@dataclass(frozen=True)
class Probe:
    """A fixed diagnostic batch (lecture-sized, so gradient figures compare) and a larger one for the
    initial loss, from their own generator: diagnostics never change the training trajectory."""
    diag: tuple[torch.Tensor, torch.Tensor]  # (B, block_size), (B,)
    init: tuple[torch.Tensor, torch.Tensor]  # (<= 8192, block_size), (<= 8192,)

    @classmethod
    def draw(cls, train: tuple[torch.Tensor, torch.Tensor], cfg: TrainConfig) -> Probe:
        X, Y = train
        g = torch.Generator().manual_seed(cfg.seed + 1)
        diag_ix = torch.randint(0, len(Y), (cfg.batch_size,), generator=g)
        init_ix = torch.randint(0, len(Y), (min(len(Y), 8192),), generator=g)
        return cls((X[diag_ix], Y[diag_ix]), (X[init_ix], Y[init_ix]))

    def snapshot(self, model: NameMLP, step: int) -> dict:
        return diagnostics.snapshot(model, *self.diag, step)


def new_history(model: NameMLP, probe: Probe) -> dict:
    """What the loop records, before its first step."""
    return {"initial_loss": diagnostics.initial_loss(model, *probe.init), "snapshots": [probe.snapshot(model, 0)],
            "losses": [], "val": [], "update_steps": [],
            "update_log10": {n: [] for n in diagnostics.weight_names(model)}, "seconds": 0.0}


def load_checkpoint(path: Path, model: NameMLP, optimizer) -> tuple[int, dict]:
    """Restore the model, optimizer and RNG from a checkpoint; returns (its step, the history so far)."""
    ckpt = torch.load(path, weights_only=True)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    history = ckpt["history"]
    history["losses"] = history["losses"].tolist()
    return ckpt["step"], history


def save_checkpoint(path: Path, model: NameMLP, optimizer, step: int, history: dict) -> None:
    save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "rng": {"torch": torch.get_rng_state()},  # (minibatches: see minibatches())
                 "history": {**history, "losses": torch.tensor(history["losses"], dtype=torch.float32)}}, path)


def log_setup(model: NameMLP, cfg: TrainConfig, splits: Splits, history: dict, log) -> None:
    c = model.config
    log(f"vocab size {c.vocab_size}, block size {c.block_size}, {model.num_params():,} parameters; examples "
        f"train {len(splits.train[1]):,} / val {len(splits.val[1]):,} / test {len(splits.test[1]):,}")
    log(f"{cfg.optimizer}, {cfg.steps:,} steps of batch {cfg.batch_size}, lr {cfg.lr:g}, {cfg.threads} thread(s); "
        f"initial loss {history['initial_loss']:.4f} (ln(vocab) = {math.log(c.vocab_size):.4f})")


def loop(run_dir: Path, model: NameMLP, optimizer, cfg: TrainConfig, splits: Splits, probe: Probe, history: dict,
         start: int, distill: Distillation | None, progress: bool, log) -> None:
    """Steps start..cfg.steps, recording into `history`; checkpoints on the way and at the end.
    Ctrl-C: a checkpoint of whole steps, then TrainingInterrupted."""
    ckpt_path = run_dir / rundir.CHECKPOINT
    (Xtr, Ytr), (Xva, Yva) = splits.train, splits.val
    batches = [Xtr, Ytr] if distill is None else [Xtr, Ytr, distill.soft]
    weights = diagnostics.weight_names(model)
    params = dict(model.named_parameters())
    weight_params = [params[n] for n in weights]

    def checkpoint(step):
        history["seconds"] = seconds_before + time.perf_counter() - t0
        save_checkpoint(ckpt_path, model, optimizer, step, history)

    model.train()
    losses = history["losses"]
    bar = tqdm(total=cfg.steps, initial=start, unit="step", disable=not progress, smoothing=0.1)
    seconds_before, t0, lr_now = history["seconds"], time.perf_counter(), None
    with StopFlag() as stop:
        for step in range(start, cfg.steps):
            if stop.requested:
                checkpoint(step)
                bar.close()
                raise TrainingInterrupted(step, ckpt_path)
            lr = learning_rate(cfg, step)
            if lr != lr_now:  # touch the param groups only when the rate changes
                for group in optimizer.param_groups:
                    group["lr"] = lr
                lr_now = lr

            if step % BLOCK == 0 or step == start:
                block = minibatches(batches, cfg.batch_size, cfg.seed, step // BLOCK)
            logits, loss = model(block[0][step % BLOCK], block[1][step % BLOCK])  # (B, block_size), (B,)
            objective = loss if distill is None else distill.loss(logits, loss, block[2][step % BLOCK])
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            record_update = step % cfg.update_interval == 0
            if record_update:
                before = [p.detach().clone() for p in weight_params]
            optimizer.step()
            losses.append(loss.item())

            if record_update:
                history["update_steps"].append(step)
                for name, r in zip(weights, diagnostics.update_ratios(before, weight_params)):
                    history["update_log10"][name].append(r)
            done = step + 1
            if done % 100 == 0:  # the bar costs more than a step: feed it in hundreds
                bar.update(done - bar.n)
                bar.set_postfix(loss=f"{sum(losses[-100:]) / 100:.4f}", lr=f"{lr:.3g}", refresh=False)
            if done % cfg.eval_interval == 0 or done == cfg.steps:
                val = evaluate(model, Xva, Yva)
                history["val"].append({"step": done, "val_loss": val,
                                       "train_loss_recent": sum(losses[-cfg.eval_interval:]) /
                                       len(losses[-cfg.eval_interval:])})
                (bar.write if progress else log)(
                    f"step {done:>7,}  train (recent batches) {history['val'][-1]['train_loss_recent']:.4f}"
                    f"  val {val:.4f}  lr {lr:.3g}")
            if done % cfg.diag_interval == 0 and done != cfg.steps:
                history["snapshots"].append(probe.snapshot(model, done))
            if done % cfg.checkpoint_interval == 0 and done != cfg.steps:
                checkpoint(done)
    bar.update(cfg.steps - bar.n)
    bar.close()
    loop_seconds = time.perf_counter() - t0
    history["seconds"] = seconds_before + loop_seconds
    steps_run = cfg.steps - start
    if steps_run:
        log(f"{steps_run:,} steps in {loop_seconds:.1f} s ({steps_run / loop_seconds:,.0f} steps/s)")
    if history["snapshots"][-1]["step"] != cfg.steps:  # (resuming a finished run has it already)
        history["snapshots"].append(probe.snapshot(model, cfg.steps))
    checkpoint(cfg.steps)


def finish(run_dir: Path, model: NameMLP, cfg: TrainConfig, splits: Splits, history: dict,
           distill: Distillation | None) -> dict:
    """Evaluate with running (and calibrated) statistics, keep the better on val, write the results:
    the run's metrics and diagnostics as those of a model of one member."""
    splits_xy = {"train": splits.train, "val": splits.val, "test": splits.test}
    running = {k: evaluate(model, X, Y) for k, (X, Y) in splits_xy.items()}
    calibrated, chosen = None, "running"
    if cfg.calibrate and has_batchnorm(model):
        running_state = {k: v.clone() for k, v in model.state_dict().items()}
        calibrate_batchnorm(model, splits.train[0])
        calibrated = {k: evaluate(model, X, Y) for k, (X, Y) in splits_xy.items()}
        if calibrated["val"] < running["val"]:
            chosen = "calibrated"
        else:
            model.load_state_dict(running_state)
    best = calibrated if chosen == "calibrated" else running
    seconds = round(history["seconds"], 2)
    member = {"seed": cfg.seed, **best, "statistics": chosen, "running": running, "calibrated": calibrated,
              "seconds": seconds, "initial_loss": history["initial_loss"], "val_history": history["val"]}
    metrics = rundir.model_metrics(cfg.steps, best, [member], distill.teacher if distill else None)

    chunk = min(1000, max(1, cfg.steps // 20))  # the lecture's 1000; finer for short runs
    report = {
        "initial_loss": history["initial_loss"],
        "ln_vocab": math.log(model.config.vocab_size),
        "snapshots": history["snapshots"],
        "update_ratio": {"steps": history["update_steps"], "log10": history["update_log10"]},
        "loss_curve": {"chunk": chunk, "log10_loss": diagnostics.loss_curve(history["losses"], chunk)},
        "health": diagnostics.health(history["initial_loss"], model.config.vocab_size,
                                     history["snapshots"][0], history["update_log10"],
                                     train_loss=best["train"], val_loss=best["val"]),
    }
    return rundir.finish(run_dir, model, metrics, rundir.model_diagnostics([report]))
