"""Distillation end to end on a tiny corpus: a teacher published to a registry, a student that learns from
its ONNX logits, resumed mid-run, published with its teacher named, and loaded by the service's loader."""
import json
import os
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from artifact.loader import load_current, load_version
from artifact.registry import version_path
from training.config import ConfigError
from training.data import load_corpus, make_splits
from training.model import ModelConfig
from training.publish import publish_run, with_teacher_losses
from training.recipe import shipped_run, train
from training.rundir import load_model, read_json, write_json
from training.teacher import load_teacher
from training.config import RecipeConfig, TrainConfig
from training.train import TrainingInterrupted, distillation_loss

QUIET = dict(progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def data(names_file):
    """A hierarchical tiny setup (context 4, pairs), so the student's graph has a pair table."""
    corpus = load_corpus(names_file)
    splits = make_splits(corpus, block_size=4)
    info = {"source": corpus.source, "path": corpus.path, "year": None, "sha256": corpus.sha256, "seed": 42,
            "sizes": splits.sizes()}
    model = ModelConfig(vocab_size=splits.vocab.size, block_size=4, n_embd=6, n_hidden=24, n_layers=2, group=2,
                        bn_momentum=0.1)
    cfg = TrainConfig(optimizer="adamw", steps=300, batch_size=64, lr=1e-2, warmup_steps=20, eval_interval=100,
                      checkpoint_interval=100, diag_interval=100, update_interval=10, seed=7)
    return splits, info, model, cfg


@pytest.fixture(scope="module")
def published_teacher(tmp_path_factory, data):
    """A two-member teacher trained and published: (registry root, version)."""
    splits, info, model, cfg = data
    d = tmp_path_factory.mktemp("teacher")
    train(d / "run", model, replace(cfg, seed=1), splits, info, RecipeConfig(members=2), **QUIET)
    version = publish_run(d / "run", d / "models", "names")
    return d / "models", version


@pytest.fixture(scope="module")
def student(tmp_path_factory, data, published_teacher):
    """A student of the published version, trained without interruption: (run_dir, metrics)."""
    splits, info, model, cfg = data
    root, version = published_teacher
    run_dir = tmp_path_factory.mktemp("student")
    metrics = train(run_dir, model, cfg, splits, info, RecipeConfig(teacher=str(version_path(root, "names", version))),
                    **QUIET)
    return run_dir, metrics


def test_with_one_hot_soft_targets_the_distillation_loss_is_the_usual_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 27), torch.randint(0, 27, (16,))
    hard = F.cross_entropy(logits, y)
    one_hot = F.one_hot(y, 27).float()
    for weight in (0.0, 0.5, 0.9):
        assert distillation_loss(logits, hard, one_hot, weight, 1.0).item() == pytest.approx(hard.item(), rel=1e-6)


def test_teacher_logits_come_from_the_published_onnx_graph_row_for_row(data, published_teacher):
    splits, info, _, _ = data
    root, version = published_teacher
    teacher = load_teacher(root / "names", splits, info)  # REGISTRY/NAME: its CURRENT version
    served = load_version(version_path(root, "names", version))
    X = splits.train[0][:500].numpy()
    assert np.array_equal(teacher.logits[:500].numpy(), served.logits(X))
    assert teacher.logits.shape == (len(splits.train[1]), splits.vocab.size)
    assert teacher.info == {"name": "names", "version": version, "val": served.manifest.metrics["val"],
                            "members": 2, "source": str(version_path(root, "names", version))}


def test_a_student_matches_its_teacher_better_than_the_same_run_without_one(data, student, published_teacher,
                                                                            tmp_path):
    splits, info, model, cfg = data
    run_dir, metrics = student
    plain = train(tmp_path, model, cfg, splits, info, **QUIET)
    teacher = load_version(version_path(*published_teacher[:1], "names", published_teacher[1]))
    X = splits.val[0]
    target = F.log_softmax(torch.from_numpy(teacher.logits(X.numpy())).double(), -1)

    def kl_to_teacher(d):
        with torch.no_grad():
            ours = F.log_softmax(load_model(d)(X)[0].double(), -1)
        return float((target.exp() * (target - ours)).sum(-1).mean())

    assert kl_to_teacher(run_dir) < kl_to_teacher(tmp_path)
    assert metrics["val_loss"] != plain["val_loss"] and metrics["teacher"]["members"] == 2


def test_a_student_interrupted_mid_run_resumes_to_the_uninterrupted_weights(data, student, published_teacher,
                                                                            tmp_path):
    splits, info, model, cfg = data
    root, version = published_teacher
    student_recipe = RecipeConfig(teacher=str(version_path(root, "names", version)))

    def ctrl_c_at_step_200(message):
        if message.startswith("step     200"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as stopped:
        train(tmp_path, model, cfg, splits, info, student_recipe, progress=False, log=ctrl_c_at_step_200)
    assert stopped.value.step == 200 and not (tmp_path / "model.pt").exists()
    resumed = train(tmp_path, model, cfg, splits, info, student_recipe, resume=True, **QUIET)
    whole = load_model(student[0]).state_dict()
    assert all(torch.equal(v, whole[k]) for k, v in load_model(tmp_path).state_dict().items())
    assert resumed["val_loss"] == student[1]["val_loss"]


def test_a_published_student_names_its_teacher_and_passes_the_loaders_self_test(student, published_teacher):
    run_dir, metrics = student
    root, teacher_version = published_teacher
    version = publish_run(run_dir, root, "names", force=True)  # a tiny student is well behind its teacher
    served = load_current(root, "names")  # sha256, vocabulary, graph io and the probe set
    m = served.manifest
    assert served.version == version and m.architecture["members"] == 1
    assert m.teacher == {"name": "names", "version": teacher_version, "val": metrics["teacher"]["val"],
                         "members": 2, "source": str(version_path(root, "names", teacher_version))}
    assert m.metrics["val"] == metrics["val_loss"] and m.metrics["verification"]["fold_max_abs_diff"] <= 1e-5
    on_disk = json.loads((served.path / "manifest.json").read_text())
    assert on_disk["teacher"]["version"] == teacher_version


def test_the_recipe_trains_its_teacher_first_and_ships_the_student_only_when_close_enough(data, tmp_path):
    splits, info, model, cfg = data
    cfg, recipe = replace(cfg, steps=200), RecipeConfig(teacher="train", teacher_members=2, teacher_steps=100)
    metrics = train(tmp_path, model, cfg, splits, info, recipe, **QUIET)
    teacher_metrics = read_json(tmp_path / "teacher" / "metrics.json")
    assert teacher_metrics["steps"] == 100 and len(teacher_metrics["members"]) == 2
    assert metrics["teacher"] == {"name": "teacher", "version": "", "val": teacher_metrics["val_loss"],
                                  "members": 2, "source": str(tmp_path / "teacher")}
    # What a published student's manifest says of its teacher: its losses and each member's.
    recorded = with_teacher_losses(metrics)["teacher"]
    assert (recorded["train"], recorded["val"], recorded["test"]) == tuple(
        teacher_metrics[f"{s}_loss"] for s in ("train", "val", "test"))
    assert [m["val"] for m in recorded["member_losses"]] == [m["val"] for m in teacher_metrics["members"]]
    for student_val, shipped in ((teacher_metrics["val_loss"] + 0.004, tmp_path),
                                 (teacher_metrics["val_loss"] + 0.006, tmp_path / "teacher")):
        write_json({**metrics, "val_loss": student_val}, tmp_path / "metrics.json")
        assert shipped_run(tmp_path) == shipped

    # Stopped after the teacher, before the student's first checkpoint: resume keeps the teacher and
    # trains the student from the start, to the same weights.
    student_weights = load_model(tmp_path).state_dict()
    for name in ("checkpoint.pt", "model.pt", "metrics.json"):
        (tmp_path / name).unlink()
    lines = []
    again = train(tmp_path, model, cfg, splits, info, recipe, resume=True, progress=False, log=lines.append)
    assert f"resuming {tmp_path / 'teacher' / 'member-0'} at step 100 of 100" in lines
    assert not any(line.startswith(f"resuming {tmp_path} ") for line in lines)
    assert again["val_loss"] == metrics["val_loss"]
    assert all(torch.equal(v, student_weights[k]) for k, v in load_model(tmp_path).state_dict().items())


def test_a_teacher_trained_on_another_split_is_refused(data, published_teacher):
    splits, info, _, _ = data
    with pytest.raises(ConfigError, match="trained on another corpus or split .* val and test names"):
        load_teacher(published_teacher[0] / "names", splits, {**info, "seed": 43})
    with pytest.raises(ConfigError, match="not a finished run directory, a published version"):
        load_teacher(published_teacher[0], splits, info)
