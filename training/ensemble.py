"""Train an ensemble (TrainConfig.members > 1) into one run directory, and load any run's model.pt.

Each member is an ordinary run (train.run, seed + k), so it checkpoints, resumes and reports on its own;
this module then writes the ensemble's files beside them, in the shapes publish and the CLI read:
  member-<k>/       member k's complete run directory
  config.json       the ensemble's configuration (train.members = K, the base seed)
  model.pt          {"config", "members": [state_dict, ...]}: one member config, K state dicts
  metrics.json      the ensemble's train/val/test loss, and each member's under "members"
  diagnostics.json  {"members": [each member's diagnostics], "health": every member's warnings, marked}
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from training.data import Splits
from training.model import Ensemble, ModelConfig, NameMLP
from training.train import TrainConfig, evaluate, run, save_atomic, write_config, write_json


def member_dir(run_dir: str | Path, k: int) -> Path:
    return Path(run_dir) / f"member-{k}"


def train_members(run_dir: str | Path, model_config: ModelConfig, cfg: TrainConfig, splits: Splits,
                  data_info: dict, resume: bool = False, progress: bool = True, preset: str | None = None,
                  log=print) -> dict:
    """Train (or resume) each member in turn, then write the ensemble's files; returns its metrics."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_config(run_dir, preset, model_config, cfg, data_info, splits)
    member_metrics = []
    for k in range(cfg.members):
        d = member_dir(run_dir, k)
        log(f"member {k} (of {cfg.members}, seed {cfg.seed + k}) in {d}")
        member_cfg = replace(cfg, members=1, seed=cfg.seed + k)
        member_metrics.append(run(d, model_config, member_cfg, splits, data_info, progress=progress,
                                  resume=resume and (d / "checkpoint.pt").exists(), preset=preset, log=log))
    model = Ensemble([load_model(member_dir(run_dir, k) / "model.pt") for k in range(cfg.members)])
    return finish(run_dir, model, cfg, splits, member_metrics)


def finish(run_dir: Path, model: Ensemble, cfg: TrainConfig, splits: Splits, member_metrics: list[dict]) -> dict:
    losses = {k: evaluate(model, X, Y) for k, (X, Y) in
              {"train": splits.train, "val": splits.val, "test": splits.test}.items()}
    save_atomic({"config": model.config.to_dict(), "members": [m.state_dict() for m in model.members]},
                run_dir / "model.pt")
    seconds = sum(m["seconds"] for m in member_metrics)
    metrics = {"steps": cfg.steps, "train_loss": losses["train"], "val_loss": losses["val"],
               "test_loss": losses["test"], "running": None, "calibrated": None, "statistics": "per member",
               "seconds": round(seconds, 2),
               "steps_per_second": round(cfg.steps * cfg.members / seconds, 1) if seconds else None,
               "members": [{"seed": cfg.seed + k, "train": m["train_loss"], "val": m["val_loss"],
                            "test": m["test_loss"], "statistics": m["statistics"]}
                           for k, m in enumerate(member_metrics)]}
    write_json(metrics, run_dir / "metrics.json")
    reports = [json.loads((member_dir(run_dir, k) / "diagnostics.json").read_text()) for k in range(cfg.members)]
    health = {"ok": all(r["health"]["ok"] for r in reports),
              "warnings": [{**w, "member": k, "message": f"member {k}: {w['message']}"}
                           for k, r in enumerate(reports) for w in r["health"]["warnings"]]}
    write_json({"members": reports, "health": health}, run_dir / "diagnostics.json")
    return metrics


def load_model(path: str | Path) -> NameMLP | Ensemble:
    """A run's model.pt (a single model or an ensemble) in eval mode; FileNotFoundError if absent."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = ModelConfig(**saved["config"])
    states = saved["members"] if "members" in saved else [saved["state_dict"]]
    models = []
    for state in states:
        m = NameMLP(config)
        m.load_state_dict(state)
        models.append(m)
    return (Ensemble(models) if "members" in saved else models[0]).eval()
