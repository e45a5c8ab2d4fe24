"""Train any kind of run into a run directory: one model, an ensemble of K members (in parallel
processes if asked), a student distilled from a teacher, or the whole recipe (train the teacher, then
distil it). Each stage is an ordinary run directory, so each resumes on its own.

    train(run_dir, ...)   -> metrics.json's content, whatever the kind
    shipped_run(run_dir)  -> the run to publish: the student, or its teacher when the student falls short
    summary(metrics)      -> the lines the CLI prints
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from training import rundir
from training.data import Splits
from training.model import Ensemble, ModelConfig
from training.rundir import member_dir
from training.teacher import load_teacher
from training.config import TRAIN_TEACHER, RecipeConfig, TrainConfig
from training.train import Distillation, TrainingInterrupted, evaluate, run, write_config

STUDENT_TOLERANCE = 0.005  # ship the student when its val is within this of its teacher's


def train(run_dir: str | Path, model_config: ModelConfig, cfg: TrainConfig, splits: Splits, data_info: dict,
          recipe: RecipeConfig = RecipeConfig(), resume: bool = False, progress: bool = True,
          preset: str | None = None, log=print) -> dict:
    """Train (or resume: every stage with a checkpoint continues, the others start) into run_dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_config(run_dir, preset, model_config, cfg, data_info, splits, recipe)
    distill = None
    if recipe.teacher:
        source = recipe.teacher
        if recipe.teacher == TRAIN_TEACHER:
            source = run_dir / rundir.TEACHER
            teacher_cfg = replace(cfg, steps=recipe.teacher_steps or cfg.steps)
            teacher_recipe = RecipeConfig(members=recipe.teacher_members, parallel=recipe.parallel)
            log(f"teacher: {teacher_recipe.members} member(s) of {teacher_cfg.steps:,} steps in {source}")
            train(source, model_config, teacher_cfg, splits, data_info, teacher_recipe,
                  resume=resume and has_checkpoint(source), progress=progress, preset=preset, log=log)
        teacher = load_teacher(source, splits, data_info, threads=cfg.threads)
        distill = Distillation.of(teacher, recipe)
        log(f"teacher {teacher.info['source']}: {teacher.info['members']} member(s), val {teacher.info['val']:.4f}; "
            f"distilling with weight {recipe.distill_weight:g}, temperature {recipe.distill_temperature:g}")
    return _train_members(run_dir, model_config, cfg, recipe, splits, data_info, resume, progress, preset, log,
                          distill)


def has_checkpoint(run_dir: Path) -> bool:
    """Anything to resume in run_dir: its own checkpoint, a member's or its teacher's."""
    return any(Path(run_dir).rglob(rundir.CHECKPOINT))


def own_checkpoint(run_dir: Path) -> bool:
    """A one-member run's own loop state (not its teacher's)."""
    return (Path(run_dir) / rundir.CHECKPOINT).is_file()


def shipped_run(run_dir: str | Path) -> Path:
    """The run the recipe publishes: the best quality per multiply-add. A student costs what one member
    costs, so it ships when its val is within STUDENT_TOLERANCE of its in-run teacher's; else the teacher."""
    run_dir = Path(run_dir)
    teacher_dir = run_dir / rundir.TEACHER
    if not (teacher_dir / rundir.METRICS).is_file():
        return run_dir
    student = rundir.read_metrics(run_dir)["val_loss"]
    teacher = rundir.read_metrics(teacher_dir)["val_loss"]
    return run_dir if student <= teacher + STUDENT_TOLERANCE else teacher_dir


def summary(metrics: dict) -> list[str]:
    """A table of train/val/test: per member (with its running and calibrated BatchNorm statistics) and
    the model, with the teacher's val beside a student's."""
    lines = [f"{'model':<22} {'train':>8} {'val':>8} {'test':>8}"]

    def row(label: str, losses: dict | None, mark: str = "") -> None:
        if losses:
            lines.append(f"{label:<22} {losses['train']:>8.4f} {losses['val']:>8.4f} {losses['test']:>8.4f}{mark}")
    for k, m in enumerate(metrics["members"]):
        for kind in ("running", "calibrated"):
            row(f"member {k} {kind}", m[kind], "  <- shipped" if kind == m["statistics"] else "")
    row(f"model (mean of {len(metrics['members'])})", {s: metrics[f"{s}_loss"] for s in ("train", "val", "test")},
        "  <- model.pt")
    if metrics.get("teacher"):
        t = metrics["teacher"]
        lines.append(f"{'teacher':<22} {'':>8} {t['val']:>8.4f} {'':>8}  ({t['members']} member(s), {t['source']})")
    rate = f" ({metrics['steps_per_second']:,.0f} steps/s)" if metrics.get("steps_per_second") else ""
    lines.append(f"training loop {metrics['seconds']:.1f} s{rate}")
    return lines


# ---- members

def _train_members(run_dir: Path, model_config: ModelConfig, cfg: TrainConfig, recipe: RecipeConfig,
                   splits: Splits, data_info: dict, resume: bool, progress: bool, preset: str | None, log,
                   distill: Distillation | None) -> dict:
    """K = 1: the run directory is its member's. K > 1: each member is an ordinary run (seed + k) in
    member-<k>/, then the mean model's files beside them."""
    if recipe.members == 1:
        return run(run_dir, model_config, cfg, splits, data_info, resume=resume and own_checkpoint(run_dir),
                   progress=progress, preset=preset, log=log, distill=distill, recipe=recipe)
    jobs = []
    member_recipe = replace(recipe, members=1, parallel=1, teacher=distill.teacher["source"] if distill else "")
    for k in range(recipe.members):
        d = member_dir(run_dir, k)
        member_cfg = replace(cfg, seed=cfg.seed + k)
        log(f"member {k} (of {recipe.members}, seed {member_cfg.seed}) in {d}")
        jobs.append(dict(run_dir=d, model_config=model_config, train_config=member_cfg, splits=splits,
                         data_info=data_info, resume=resume and own_checkpoint(d), preset=preset,
                         distill=distill, recipe=member_recipe))
    if recipe.parallel > 1:
        _run_in_processes(jobs, recipe.parallel, log)
    else:
        for job in jobs:
            run(**job, progress=progress, log=log)

    dirs = [member_dir(run_dir, k) for k in range(recipe.members)]
    model = Ensemble([rundir.load_model(d).members[0] for d in dirs]).eval()
    losses = {s: evaluate(model, *getattr(splits, s)) for s in ("train", "val", "test")}
    members = [rundir.read_metrics(d)["members"][0] for d in dirs]
    metrics = rundir.model_metrics(cfg.steps, losses, members, distill.teacher if distill else None)
    report = rundir.model_diagnostics([rundir.read_diagnostics(d)["members"][0] for d in dirs])
    return rundir.finish(run_dir, model, metrics, report)


def _run_in_processes(jobs: list[dict], parallel: int, log) -> None:
    """Run up to `parallel` members at once, each in its own process (spawned: torch and fork do not mix).

    The children sit in their own process groups, so a Ctrl-C reaches the parent alone, which passes
    one SIGINT to each running child: each checkpoints between steps, exactly as a run in the
    foreground does. Members not yet started stay unstarted; --resume starts them."""
    ctx = mp.get_context("spawn")
    pending, running, codes = list(jobs), {}, []
    interrupted = False

    def on_sigint(signum, frame):
        nonlocal interrupted
        interrupted = True
        for p, _ in running.values():
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        while running or (pending and not interrupted):
            while pending and len(running) < parallel and not interrupted:
                job = pending.pop(0)
                p = ctx.Process(target=_member_main, args=(job,), name=f"member {job['run_dir'].name}")
                p.start()
                running[p.sentinel] = (p, job)
            for sentinel in mp.connection.wait(list(running)):
                p, job = running.pop(sentinel)
                p.join()
                codes.append((job, p.exitcode))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    stopped = [job for job, code in codes if code == 130]
    if stopped or interrupted:
        import torch

        saved = [j["run_dir"] / rundir.CHECKPOINT for j in stopped if (j["run_dir"] / rundir.CHECKPOINT).is_file()]
        step = torch.load(saved[0], weights_only=True)["step"] if saved else 0
        raise TrainingInterrupted(step, saved[0] if saved else jobs[0]["run_dir"])
    failed = [f"{job['run_dir']} (exit code {code})" for job, code in codes if code != 0]
    if failed:
        raise RuntimeError(f"member training failed: {', '.join(failed)}")
    log(f"{len(jobs)} members trained, {parallel} at a time")


def _member_main(job: dict) -> None:
    os.setpgrp()  # out of the terminal's process group: Ctrl-C comes through the parent only
    try:
        run(**job, progress=False, log=_print_now)
    except TrainingInterrupted as e:
        _print_now(f"{job['run_dir'].name}: {e}")
        sys.exit(130)
    except KeyboardInterrupt:  # a Ctrl-C before the loop began: nothing to save, resume starts it again
        sys.exit(130)


def _print_now(*args) -> None:
    print(*args, flush=True)
