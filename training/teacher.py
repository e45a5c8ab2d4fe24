"""A teacher for distillation: its logits for every train example, computed once, and what a
student's manifest records about it.

A teacher is named by a path:
- a published version directory (`<registry>/<name>/<version>`): its ONNX graph alone gives the logits
  (onnxruntime, after the service's own loader has self-tested it), so no torch weights are needed;
- `<registry>/<name>`: the version its CURRENT pointer names;
- a finished run directory (model.pt): its torch model.
It must have been trained on the student's corpus and split (sha256 and split seed): a teacher trained
on another split has seen the student's val or test names, and its soft targets would leak them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from artifact.layout import POINTER, current_version
from artifact.manifest import MANIFEST_FILE
from training import rundir
from training.config import ConfigError
from training.data import Splits, build_examples

CHUNK = 16384  # contexts per call when computing the teacher's logits


@dataclass(frozen=True)
class Teacher:
    info: dict  # {name, version, val, members, source}: the manifest's `teacher` ("" version: a run)
    logits: torch.Tensor  # (N_train, vocab) float32: row i for train example i


def load_teacher(source: str | Path, splits: Splits, data_info: dict, threads: int = 1) -> Teacher:
    path = Path(source)
    if (path / POINTER).is_file():
        path = path / current_version(path.parent, path.name)
    if (path / MANIFEST_FILE).is_file():
        return _from_version(path, splits, data_info, threads)
    if (path / rundir.MODEL).is_file():
        return _from_run(path, splits, data_info)
    raise ConfigError(f"teacher {source}: not a finished run directory, a published version or a "
                      f"registry name (no {rundir.MODEL}, manifest.json or CURRENT in it)")


def _from_version(path: Path, splits: Splits, data_info: dict, threads: int) -> Teacher:
    from artifact import ArtifactError
    from artifact.loader import load_version

    try:
        loaded = load_version(path, threads=threads)  # the same checks the service makes
    except ArtifactError as e:
        raise ConfigError(f"teacher {path}: {e}") from None
    m = loaded.manifest
    _check_same_data(path, m.corpus["sha256"], m.corpus["seed"], m.vocab, splits, data_info)
    X = _train_contexts(splits, m.block_size).numpy()
    logits = torch.cat([torch.from_numpy(loaded.logits(X[i:i + CHUNK])) for i in range(0, len(X), CHUNK)])
    info = {"name": m.name, "version": m.version, "val": m.metrics["val"],
            "members": m.architecture.get("members", 1), "source": str(path)}
    return Teacher(info, logits)


def _from_run(path: Path, splits: Splits, data_info: dict) -> Teacher:
    config = rundir.read_json(path / rundir.CONFIG)
    metrics = rundir.read_metrics(path)
    _check_same_data(path, config["data"]["sha256"], config["data"]["seed"], config["vocab"], splits, data_info)
    model = rundir.load_model(path)
    X = _train_contexts(splits, model.config.block_size)
    with torch.no_grad():
        logits = torch.cat([model(x)[0] for x in X.split(CHUNK)])
    info = {"name": path.name, "version": "", "val": metrics["val_loss"], "members": len(model.members),
            "source": str(path)}
    return Teacher(info, logits)


def _check_same_data(path: Path, sha256: str, seed: int, vocab: str, splits: Splits, data_info: dict) -> None:
    if (sha256, seed) != (data_info["sha256"], data_info["seed"]):
        raise ConfigError(f"teacher {path} was trained on another corpus or split (sha256 {sha256[:12]}..., "
                          f"seed {seed}; this run: {data_info['sha256'][:12]}..., seed {data_info['seed']}): "
                          f"it may have seen this run's val and test names")
    if vocab != splits.vocab.chars:
        raise ConfigError(f"teacher {path}: vocabulary {vocab!r} differs from this run's {splits.vocab.chars!r}")


def _train_contexts(splits: Splits, block_size: int) -> torch.Tensor:
    """The train examples' contexts at the teacher's block size: one row per example, in the student's
    order whatever the two block sizes (an example per character of each name, and its end)."""
    if block_size == splits.block_size:
        return splits.train[0]
    return build_examples(splits.names[0], splits.vocab, block_size)[0]
