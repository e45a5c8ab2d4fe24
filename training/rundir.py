"""A run directory's files: their names, and the one writer and the one reader of a trained model.

Every kind of run (one model, an ensemble of K members, a student distilled from a teacher) is a model
whose logits are the mean of K >= 1 members' logits, and leaves the same files:
  config.json       model, train and data config, vocabulary (written first, so a run is identifiable)
  checkpoint.pt     a one-member run's loop state: resume continues bit-identically
  model.pt          {"config": ModelConfig dict, "members": [state_dict, ...]} with the statistics to ship
  metrics.json      train/val/test loss of the model, wall time; per member ("members") when K > 1;
                    the teacher's name, version and val ("teacher") for a student
  diagnostics.json  activation/gradient statistics, update:data ratios, loss curve, a health verdict
                    (K > 1: {"members": [each member's], "health": all of their warnings, marked})
  plots/            the figures drawn from diagnostics.json (plots/member-<k>/ when K > 1)
  member-<k>/       K > 1: member k's complete run directory
  teacher/          train.teacher 'train': the teacher's complete run directory
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from training.model import Ensemble, ModelConfig, NameMLP

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


def finish(run_dir: Path, model: NameMLP | Ensemble, metrics: dict, report: dict) -> dict:
    """Write a trained run's model.pt, metrics.json and diagnostics.json; returns the metrics."""
    members = model.members if isinstance(model, Ensemble) else [model]
    save_atomic({"config": model.config.to_dict(), "members": [m.state_dict() for m in members]},
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
