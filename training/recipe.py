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
from training.train import TrainConfig, TrainingInterrupted, evaluate, run, write_config

TRAIN_TEACHER = "train"  # train.teacher: first train the teacher into RUN_DIR/teacher
STUDENT_TOLERANCE = 0.005  # ship the student when its val is within this of its teacher's


def train(run_dir: str | Path, model_config: ModelConfig, cfg: TrainConfig, splits: Splits, data_info: dict,
          resume: bool = False, progress: bool = True, preset: str | None = None, log=print) -> dict:
    """Train (or resume: every stage with a checkpoint continues, the others start) into run_dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_config(run_dir, preset, model_config, cfg, data_info, splits)
    teacher = None
    if cfg.teacher:
        source = cfg.teacher
        if cfg.teacher == TRAIN_TEACHER:
            source = run_dir / rundir.TEACHER
            teacher_cfg = replace(cfg, teacher="", members=cfg.teacher_members,
                                  steps=cfg.teacher_steps or cfg.steps)
            log(f"teacher: {teacher_cfg.members} member(s) of {teacher_cfg.steps:,} steps in {source}")
            train(source, model_config, teacher_cfg, splits, data_info, resume=resume and has_checkpoint(source),
                  progress=progress, preset=preset, log=log)
        teacher = load_teacher(source, splits, data_info, threads=cfg.threads)
        log(f"teacher {teacher.info['source']}: {teacher.info['members']} member(s), val {teacher.info['val']:.4f}; "
            f"distilling with weight {cfg.distill_weight:g}, temperature {cfg.distill_temperature:g}")
    if cfg.members == 1:
        return run(run_dir, model_config, cfg, splits, data_info, resume=resume and own_checkpoint(run_dir),
                   progress=progress, preset=preset, log=log, teacher=teacher)
    return _train_members(run_dir, model_config, cfg, splits, data_info, resume, progress, preset, log, teacher)


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
    student = rundir.read_json(run_dir / rundir.METRICS)["val_loss"]
    teacher = rundir.read_json(teacher_dir / rundir.METRICS)["val_loss"]
    return run_dir if student <= teacher + STUDENT_TOLERANCE else teacher_dir


def summary(metrics: dict) -> list[str]:
    """A table of train/val/test: per member and the mean (ensemble), or running and calibrated
    statistics (one model), with the teacher's val beside a student's."""
    if metrics.get("members"):
        rows = [(f"member {k}", m) for k, m in enumerate(metrics["members"])]
        rows.append(("ensemble", {s: metrics[f"{s}_loss"] for s in ("train", "val", "test")}))
        header, chosen = "model", "ensemble"
    else:
        rows = [("running", metrics["running"]), ("calibrated", metrics["calibrated"])]
        header, chosen = "statistics", metrics["statistics"]
    lines = [f"{header:<12} {'train':>8} {'val':>8} {'test':>8}"]
    for label, losses in rows:
        if losses:
            mark = "  <- model.pt" if label == chosen else ""
            lines.append(f"{label:<12} {losses['train']:>8.4f} {losses['val']:>8.4f} {losses['test']:>8.4f}{mark}")
    if metrics.get("teacher"):
        t = metrics["teacher"]
        lines.append(f"{'teacher':<12} {'':>8} {t['val']:>8.4f} {'':>8}  ({t['members']} member(s), {t['source']})")
    rate = f" ({metrics['steps_per_second']:,.0f} steps/s)" if metrics.get("steps_per_second") else ""
    lines.append(f"training loop {metrics['seconds']:.1f} s{rate}")
    return lines


# ---- ensembles

def _train_members(run_dir: Path, model_config: ModelConfig, cfg: TrainConfig, splits: Splits, data_info: dict,
                   resume: bool, progress: bool, preset: str | None, log, teacher) -> dict:
    """Each member is an ordinary run (seed + k) in member-<k>/; then the mean model's files beside them."""
    jobs = []
    for k in range(cfg.members):
        d = member_dir(run_dir, k)
        member_cfg = replace(cfg, members=1, parallel=1, seed=cfg.seed + k,
                             teacher=teacher.info["source"] if teacher else "")
        log(f"member {k} (of {cfg.members}, seed {member_cfg.seed}) in {d}")
        jobs.append(dict(run_dir=d, model_config=model_config, train_config=member_cfg, splits=splits,
                         data_info=data_info, resume=resume and own_checkpoint(d), preset=preset, teacher=teacher))
    if cfg.parallel > 1 and len(jobs) > 1:
        _run_in_processes(jobs, cfg.parallel, log)
    else:
        for job in jobs:
            run(**job, progress=progress, log=log)

    model = Ensemble([rundir.load_model(member_dir(run_dir, k)).members[0] for k in range(cfg.members)]).eval()
    member_metrics = [rundir.read_json(member_dir(run_dir, k) / rundir.METRICS) for k in range(cfg.members)]
    losses = {s: evaluate(model, *getattr(splits, s)) for s in ("train", "val", "test")}
    seconds = sum(m["seconds"] for m in member_metrics)
    metrics = {"steps": cfg.steps, "train_loss": losses["train"], "val_loss": losses["val"],
               "test_loss": losses["test"], "running": None, "calibrated": None, "statistics": "per member",
               "seconds": round(seconds, 2),
               "steps_per_second": round(cfg.steps * cfg.members / seconds, 1) if seconds else None,
               "members": [{"seed": cfg.seed + k, "train": m["train_loss"], "val": m["val_loss"],
                            "test": m["test_loss"], "statistics": m["statistics"]}
                           for k, m in enumerate(member_metrics)],
               "teacher": None if teacher is None else teacher.info}
    reports = [rundir.read_json(member_dir(run_dir, k) / rundir.DIAGNOSTICS) for k in range(cfg.members)]
    health = {"ok": all(r["health"]["ok"] for r in reports),
              "warnings": [{**w, "member": k, "message": f"member {k}: {w['message']}"}
                           for k, r in enumerate(reports) for w in r["health"]["warnings"]]}
    return rundir.finish(run_dir, model, metrics, {"members": reports, "health": health})


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
