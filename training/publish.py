"""A training run directory -> folded, exported, verified artifact -> a new version in the registry.

    python -m training.publish RUN_DIR --registry models --name names [--force] [--tolerance 0.01]

Nothing reaches the registry unless the folded weights reproduce the trained model on the whole val
set (max abs logit difference <= 1e-5), onnxruntime reproduces it too (<= 1e-4), and the val loss the
shipped graph gives matches the run's metrics.json (so the quality gate compares true numbers).
The registry then self-tests the staged artifact with the service's own loader before publishing.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from artifact import ArtifactError, typicality
from artifact.manifest import (FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, NAMES_FILE, REPORT_DIR, Manifest,
                               hash_files)
from artifact.loader import load_version
from artifact.registry import AlreadyPublished, publish as publish_version
from training.config import data_config, moved_recipe_keys, selected_corpus
from training.data import Corpus, CorpusError, Splits, make_splits
from training import rundir
from training.export import INPUT, OPSET, OUTPUT, to_onnx
from training.fold import fold
from training.model import Ensemble, ModelConfig, NameMLP, as_ensemble

FOLD_TOLERANCE = 1e-5  # max abs logit difference, folded (numpy) vs unfolded eval-mode torch
ONNX_TOLERANCE = 1e-4  # the same for onnxruntime
METRICS_TOLERANCE = 1e-3  # val loss of the exported graph vs the run's metrics.json
PROBE_SIZE = 8
MANIFEST_MEMBER_KEYS = ("seed", "train", "val", "test", "statistics", "running", "calibrated")

log = logging.getLogger(__name__)


def publish_run(run_dir: str | Path, registry: str | Path, name: str, force: bool = False,
                tolerance: float = 0.01, *, recipe: dict | None = None, new_corpus: bool = False) -> str:
    """Publish the model in `run_dir` as a new version of `<registry>/<name>`; return the version.
    recipe: the configuration the whole run was started with (default: run_dir's own), which a shipped
    teacher's run directory does not hold."""
    run_dir = Path(run_dir)
    config = moved_recipe_keys(_read(rundir.read_json, run_dir / rundir.CONFIG))
    recipe = recipe or run_recipe(config)
    metrics = with_teacher_losses(_read(rundir.read_metrics, run_dir))
    diagnostics = _read(rundir.read_diagnostics, run_dir)
    model = load_model(run_dir / rundir.MODEL)
    corpus, splits = rebuild_data(config, model.config)
    with tempfile.TemporaryDirectory(prefix="namegen-staging-") as staging:
        write_artifact(staging, model, corpus, splits, train_config=config.get("train", {}),
                       metrics=metrics, diagnostics=diagnostics, seed=config.get("data", {}).get("seed", 42),
                       plots_dir=run_dir / rundir.PLOTS, recipe=recipe)
        return publish_version(staging, registry, name, force=force, tolerance=tolerance, check=load_version,
                               new_corpus=new_corpus)


def with_teacher_losses(metrics: dict) -> dict:
    """A student's metrics with its teacher's train/test losses and each member's beside the val they
    name, when the teacher is a run directory still on disk: the card and the benchmarks then compare
    the student with its teacher and with one member alone from the manifest alone."""
    teacher = metrics.get("teacher")
    source = Path(teacher["source"]) if teacher and teacher.get("source") else None
    if source is None or not (source / rundir.METRICS).is_file():
        return metrics
    t = rundir.read_metrics(source)
    member_losses = [{k: m.get(k) for k in ("seed", "train", "val", "test")} for m in t["members"]]
    return {**metrics, "teacher": {**teacher, "train": t["train_loss"], "test": t["test_loss"],
                                   "member_losses": member_losses}}


def run_recipe(config: dict) -> dict:
    """A run's config.json -> {model, train, recipe}: what, with the corpus, decides the trained model."""
    return {"model": config["model"], "train": config["train"], "recipe": config.get("recipe", {})}


def load_model(path: Path) -> Ensemble:
    """A run's model (its directory or model.pt); ArtifactError if there is none."""
    try:
        return rundir.load_model(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found (is this a finished training run?)") from None


def rebuild_data(config: dict, model_config: ModelConfig) -> tuple[Corpus, Splits]:
    """The run's corpus and split again, refusing if the corpus is not the one the model was trained on."""
    data = config.get("data", {})
    corpus = selected_corpus(data_config({"seed": 42, **data, "path": data.get("path") or data.get("source")}))
    if data.get("sha256") and data["sha256"] != corpus.sha256:
        raise ArtifactError(f"corpus {corpus.source} has changed since training "
                            f"(sha256 {corpus.sha256[:12]}..., the run recorded {data['sha256'][:12]}...)")
    splits = make_splits(corpus, model_config.block_size, seed=data.get("seed", 42))
    if splits.vocab.size != model_config.vocab_size or config.get("vocab", splits.vocab.chars) != splits.vocab.chars:
        raise ArtifactError(f"vocabulary {splits.vocab.chars!r} of {corpus.source} does not match the "
                            f"run's ({config.get('vocab')!r}, model vocab_size {model_config.vocab_size})")
    return corpus, splits


def write_artifact(out_dir: str | Path, model: NameMLP | Ensemble, corpus: Corpus, splits: Splits, *,
                   train_config: dict, metrics: dict, diagnostics: dict, seed: int = 42,
                   plots_dir: str | Path | None = None, recipe: dict | None = None) -> Manifest:
    """Fold, export, verify on the val set, and write a staged version directory (version left empty).
    A student's metrics name its teacher ("teacher"); the manifest records it beside its own figures."""
    out = Path(out_dir)
    model = as_ensemble(model)
    health = diagnostics.get("health")
    if not isinstance(health, dict):
        raise ArtifactError("diagnostics.json has no 'health' summary ({ok, warnings})")
    X_val, Y_val = splits.val
    if len(X_val) == 0:
        raise ArtifactError(f"the val split of {corpus.source} is empty: nothing to verify the export on")
    model.eval()
    folded = fold(model)
    onnx_model = to_onnx(folded)
    check = verify(model, folded, onnx_model.SerializeToString(), X_val.numpy(), Y_val.numpy())
    _check_metrics(metrics, check["val_loss"])

    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(onnx_model.SerializeToString())
    (out / NAMES_FILE).write_text("".join(n + "\n" for n in corpus.names), encoding="utf-8")
    report = out / REPORT_DIR
    report.mkdir(exist_ok=True)
    (report / "metrics.json").write_text(json.dumps(metrics, separators=(",", ":")) + "\n")
    (report / "diagnostics.json").write_text(json.dumps(_rounded(diagnostics), separators=(",", ":")) + "\n")
    if plots_dir is not None and Path(plots_dir).is_dir():
        shutil.copytree(plots_dir, report / "plots", dirs_exist_ok=True)

    manifest = Manifest(
        format_version=FORMAT_VERSION, name="", version="", created="",
        vocab=splits.vocab.chars, block_size=model.config.block_size,
        architecture={"model": model.config.to_dict(),
                      "members": len(model.members),
                      "parameters": model.num_params(),
                      "folded_parameters": folded.num_params(), "onnx_opset": OPSET},
        training=train_config,
        corpus={"source": corpus.source, "year": corpus.year, "sha256": corpus.sha256,
                "seed": seed, "sizes": splits.sizes(), "selection": corpus.selection(),
                "description": corpus.description()},
        metrics={"train": metrics["train_loss"], "val": metrics["val_loss"], "test": metrics["test_loss"],
                 "steps": metrics["steps"], "seconds": metrics["seconds"],
                 "members": [{k: m[k] for k in MANIFEST_MEMBER_KEYS} for m in metrics["members"]],
                 "verification": check},
        health={"ok": bool(health.get("ok")), "warnings": list(health.get("warnings", []))},
        files=hash_files(out),
        probe=probe_set(model, X_val),
        io={"input": INPUT, "output": OUTPUT},
        teacher=metrics.get("teacher"),
        recipe=recipe,
    )
    manifest.write(out / MANIFEST_FILE)
    return typicality.add_to_version(out)  # the corpus names' quantiles, read back by the service's scores


def verify(model: NameMLP | Ensemble, folded, onnx_bytes: bytes, X: np.ndarray, Y: np.ndarray) -> dict:
    """Folded and onnxruntime logits vs the unfolded eval-mode model on (X, Y); refuse beyond tolerance."""
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(X))[0].numpy()
    fold_diff = float(np.abs(folded.forward(X) - ref).max())
    if not fold_diff <= FOLD_TOLERANCE:
        raise ArtifactError(f"folded model differs from the trained one by {fold_diff:.3g} on the val set "
                            f"(tolerance {FOLD_TOLERANCE:g})")
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    logits = session.run([OUTPUT], {INPUT: X})[0]
    onnx_diff = float(np.abs(logits - ref).max())
    if not onnx_diff <= ONNX_TOLERANCE:
        raise ArtifactError(f"onnxruntime output differs from the trained model by {onnx_diff:.3g} on the val "
                            f"set (tolerance {ONNX_TOLERANCE:g})")
    val_loss = float(F.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(Y)))
    return {"examples": len(X), "fold_max_abs_diff": fold_diff, "onnx_max_abs_diff": onnx_diff,
            "val_loss": val_loss}


def probe_set(model: NameMLP | Ensemble, X: torch.Tensor, size: int = PROBE_SIZE) -> list[dict]:
    """`size` distinct contexts spread over X, with the unfolded eval-mode model's log-probabilities."""
    contexts = torch.unique(X, dim=0)  # sorted rows
    contexts = contexts[np.linspace(0, len(contexts) - 1, min(size, len(contexts))).round().astype(int)]
    with torch.no_grad():
        logits = model.eval()(contexts)[0]
    logprobs = F.log_softmax(logits.double(), dim=-1)  # float32 logits, float64 softmax: as the loader does
    return [{"context": c.tolist(), "logprobs": lp.tolist()} for c, lp in zip(contexts, logprobs)]


def _check_metrics(metrics: dict, val_loss: float) -> None:
    if not isinstance(metrics.get("val_loss"), (int, float)):
        raise ArtifactError("metrics.json has no val_loss")
    if abs(metrics["val_loss"] - val_loss) > METRICS_TOLERANCE:
        raise ArtifactError(f"metrics.json says val loss {metrics['val_loss']:.4f}, but the exported model "
                            f"gives {val_loss:.4f} on the rebuilt val set: model.pt and metrics.json "
                            f"(or the corpus) do not belong together")


def _rounded(obj, digits: int = 4):
    """The report's figures to `digits` significant digits: histograms and ratio histories read the
    same, and an ensemble's report (one per member) stays within the artifact's size budget."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def _read(reader, path: Path) -> dict:
    """A run's file through `reader`; ArtifactError naming the file if it is missing or unreadable."""
    try:
        return reader(path)
    except FileNotFoundError as e:
        path = Path(e.filename or path)
        raise ArtifactError(f"{path}: not found (is this a finished training run?)") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: cannot read ({e})") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.publish", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a finished training run directory")
    p.add_argument("--registry", default="models", help="registry root (default: models)")
    p.add_argument("--name", default="names", help="model name in the registry (default: names)")
    p.add_argument("--force", action="store_true", help="publish even if the quality gate refuses")
    p.add_argument("--tolerance", type=float, default=0.01, help="quality gate's val loss tolerance")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        version = publish_run(args.run_dir, args.registry, args.name, force=args.force, tolerance=args.tolerance)
    except AlreadyPublished as e:  # the same model again: nothing to do, not a failure
        print(e)
        return 0
    except (ArtifactError, CorpusError, OSError) as e:  # OSError: e.g. a registry this user cannot write to
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
