"""A run directory's files: their names, their one schema, and the one writer and the one reader of a
trained model.

Every kind of run (one model, an ensemble of K members, a student distilled from a teacher) is a model
whose logits are the mean of K >= 1 members' logits, and leaves the same files with the same schema:
  config.json       model, train, recipe and data config, vocabulary (written first: a run is identifiable)
  checkpoint.pt     a one-member run's loop state: resume continues bit-identically
  model.pt          {"config": ModelConfig dict, "members": [state_dict, ...]} with the statistics to ship
  metrics.json      the model's train/val/test loss, steps, wall time and teacher (a student's: its name,
                    version and val), and "members": per member its seed, losses, the BatchNorm statistics
                    it ships (running or calibrated) and both sets' losses, initial loss, val history
  diagnostics.json  {"members": [per member: activation/gradient statistics, update:data ratios, loss
                    curve, health], "health": every member's warnings, marked with the member}
  plots/member-<k>/ the figures drawn from member k's diagnostics
  member-<k>/       K > 1: member k's complete run directory
  teacher/          recipe.teacher 'train': the teacher's complete run directory
read_metrics and read_diagnostics also read the files of runs written before this schema.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from training.config import ModelConfig
from training.model import Ensemble, NameMLP, as_ensemble

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
METRICS = "metrics.json"
DIAGNOSTICS = "diagnostics.json"
PLOTS = "plots"
TEACHER = "teacher"


def member_dir(run_dir: str | Path, k: int) -> Path:
    return Path(run_dir) / f"member-{k}"


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temp file, then os.replace: a crash never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def model_metrics(steps: int, losses: dict, members: list[dict], teacher: dict | None) -> dict:
    """metrics.json's content: the model's losses ({train, val, test}) beside its members' entries."""
    seconds = round(sum(m["seconds"] for m in members), 2)
    return {"steps": steps, "train_loss": losses["train"], "val_loss": losses["val"], "test_loss": losses["test"],
            "seconds": seconds, "steps_per_second": round(steps * len(members) / seconds, 1) if seconds else None,
            "teacher": teacher, "members": members}


def model_diagnostics(reports: list[dict]) -> dict:
    """diagnostics.json's content: each member's report, and their warnings together, marked (named in
    the message too when there are several, so a reader knows which member to look at)."""
    prefix = len(reports) > 1
    warnings = [{**w, "member": k, "message": f"member {k}: {w['message']}" if prefix else w["message"]}
                for k, r in enumerate(reports) for w in r["health"]["warnings"]]
    return {"members": reports, "health": {"ok": all(r["health"]["ok"] for r in reports), "warnings": warnings}}


def read_metrics(run_dir: str | Path) -> dict:
    """A run's metrics.json in the one schema (older single-model runs kept the member's figures at the
    top, with no "members")."""
    metrics = read_json(Path(run_dir) / METRICS)
    if isinstance(metrics.get("members"), list) and all("running" in m for m in metrics["members"]):
        return metrics
    if isinstance(metrics.get("members"), list):  # an older ensemble: its members' own files have the rest
        members = [read_metrics(member_dir(run_dir, k))["members"][0] for k in range(len(metrics["members"]))]
    else:
        seed = read_json(Path(run_dir) / CONFIG)["train"].get("seed")
        members = [{"seed": seed, "train": metrics["train_loss"], "val": metrics["val_loss"],
                    "test": metrics["test_loss"], **{k: metrics.get(k) for k in OLD_MEMBER_KEYS}}]
    top = {k: metrics.get(k) for k in ("steps", "seconds", "steps_per_second", "teacher")}
    losses = {"train": metrics["train_loss"], "val": metrics["val_loss"], "test": metrics["test_loss"]}
    return {**model_metrics(top["steps"], losses, members, top["teacher"]), **top}


OLD_MEMBER_KEYS = ("statistics", "running", "calibrated", "seconds", "initial_loss", "val_history")


def read_diagnostics(run_dir: str | Path) -> dict:
    """A run's diagnostics.json in the one schema (older single-model runs held one member's report)."""
    report = read_json(Path(run_dir) / DIAGNOSTICS)
    return report if "members" in report else model_diagnostics([report])


def finish(run_dir: Path, model: NameMLP | Ensemble, metrics: dict, report: dict) -> dict:
    """Write a trained run's model.pt, metrics.json and diagnostics.json; returns the metrics."""
    save_atomic({"config": model.config.to_dict(), "members": [m.state_dict() for m in as_ensemble(model).members]},
                Path(run_dir) / MODEL)
    write_json(metrics, Path(run_dir) / METRICS)
    write_json(report, Path(run_dir) / DIAGNOSTICS)
    return metrics


def load_model(path: str | Path) -> Ensemble:
    """A run's model (its directory, or its model.pt) in eval mode, as the mean of its K >= 1 members.
    FileNotFoundError if absent."""
    path = Path(path)
    saved = torch.load(path / MODEL if path.is_dir() else path, map_location="cpu", weights_only=True)
    config = ModelConfig(**saved["config"])
    members = []
    for state in saved["members"] if "members" in saved else [saved["state_dict"]]:  # (older single runs)
        m = NameMLP(config)
        m.load_state_dict(state)
        members.append(m)
    return Ensemble(members).eval()
