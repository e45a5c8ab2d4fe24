"""The loop on tiny real runs: learning, determinism, resume, Ctrl-C, calibration, the run directory."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training.model import NameMLP
from training.train import (TrainConfig, TrainingInterrupted, calibrate_batchnorm, evaluate, learning_rate,
                            run)

QUIET = dict(progress=False, log=lambda *a: None)
ROOT = Path(__file__).resolve().parents[2]


def load_model(run_dir) -> NameMLP:
    from training.rundir import load_model

    (model,) = load_model(run_dir).members
    return model


def test_a_few_hundred_steps_lower_the_val_loss(tiny_run, small_splits, tiny_model):
    run_dir, metrics = tiny_run
    torch.manual_seed(1)
    before = evaluate(NameMLP(tiny_model), *small_splits.val)
    assert before == pytest.approx(math.log(small_splits.vocab.size), abs=0.15)
    assert metrics["val_loss"] < before - 0.5
    history = metrics["members"][0]["val_history"]
    assert history[0]["val_loss"] > history[-1]["val_loss"]


def test_run_directory_holds_the_documented_files(tiny_run, tiny_model, tiny_train):
    run_dir, metrics = tiny_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == tiny_model.to_dict() and config["train"] == tiny_train.to_dict()
    assert set(config["data"]) >= {"source", "path", "year", "sha256", "seed", "sizes"}
    assert config["vocab"] == ".abcdefghijklmnopqrstuvwxyz"
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert set(metrics) >= {"steps", "train_loss", "val_loss", "test_loss", "seconds", "members"}
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 300 and set(ckpt) >= {"model", "optimizer", "step", "rng"}
    assert not list(run_dir.glob("*.tmp"))  # atomic writes leave no temp files


def test_model_pt_holds_the_statistics_that_won_on_val(tiny_run, small_splits):
    run_dir, metrics = tiny_run
    (member,) = metrics["members"]
    assert member["calibrated"] is not None
    chosen = member[member["statistics"]]
    assert chosen["val"] == min(member["running"]["val"], member["calibrated"]["val"])
    model = load_model(run_dir)
    for split in ("train", "val", "test"):
        assert evaluate(model, *getattr(small_splits, split)) == pytest.approx(chosen[split], abs=1e-5)
        assert metrics[f"{split}_loss"] == chosen[split]


def test_calibration_sets_running_stats_to_the_whole_train_sets_statistics(small_splits, tiny_model):
    torch.manual_seed(0)
    model = NameMLP(replace(tiny_model, n_layers=1))
    X = small_splits.train[0]
    calibrate_batchnorm(model, X)
    emb, flatten, linear, bn = list(model.layers)[:4]
    with torch.no_grad():
        pre = linear(flatten(emb(X)))  # (N, n_hidden): BatchNorm's input over the whole train set
    torch.testing.assert_close(bn.running_mean, pre.mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(bn.running_var, pre.var(0), rtol=1e-4, atol=1e-5)


def test_same_seed_gives_identical_weights(tiny_run, tmp_path, small_splits, tiny_model, tiny_train, info):
    again = tmp_path / "again"
    run(again, tiny_model, tiny_train, small_splits, info, **QUIET)
    first, second = load_model(tiny_run[0]).state_dict(), load_model(again).state_dict()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    other = tmp_path / "other"
    run(other, tiny_model, replace(tiny_train, steps=50, seed=2), small_splits, info, **QUIET)
    run(again, tiny_model, replace(tiny_train, steps=50), small_splits, info, **QUIET)
    assert not torch.equal(load_model(other).layers[0].weight, load_model(again).layers[0].weight)


def test_resume_after_ctrl_c_continues_exactly_like_an_uninterrupted_run(
        tiny_run, tmp_path, small_splits, tiny_model, tiny_train, info):
    def ctrl_c_at_step_150(message):  # val is logged every 100 steps: interrupt after the second
        if message.startswith("step     200"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as stopped:
        run(tmp_path, tiny_model, tiny_train, small_splits, info, progress=False, log=ctrl_c_at_step_150)
    assert stopped.value.step == 200
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 200
    assert not (tmp_path / "model.pt").exists()
    resumed = run(tmp_path, tiny_model, tiny_train, small_splits, info, resume=True, **QUIET)

    whole = load_model(tiny_run[0]).state_dict()
    for name, tensor in load_model(tmp_path).state_dict().items():
        assert torch.equal(tensor, whole[name]), name
    assert resumed["val_loss"] == tiny_run[1]["val_loss"]
    for name in ("diagnostics.json",):
        ours, theirs = (json.loads((d / name).read_text())["members"][0] for d in (tmp_path, tiny_run[0]))
        assert ours["update_ratio"] == theirs["update_ratio"] and ours["loss_curve"] == theirs["loss_curve"]


def test_ctrl_c_in_a_real_training_process_saves_a_checkpoint_and_exits_130(tmp_path, names_file):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training", "train", "--data", str(names_file), "--out", str(out),
           "--steps", "1000000", "--n-hidden", "16", "--checkpoint-interval", "1000000", "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # wait until the loop is about to start
            if "initial loss" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "--resume" in err and "Traceback" not in err
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < 1_000_000 and f"step {step}" in err


def test_sgd_uses_the_lectures_step_decay():
    cfg = TrainConfig(lr=0.1, lr_decay_step=100_000)
    assert [learning_rate(cfg, s) for s in (0, 99_999, 100_000, 199_999)] == [0.1, 0.1, 0.01, 0.01]
    assert learning_rate(replace(cfg, lr_decay_step=0), 150_000) == 0.1


def test_adamw_warms_up_linearly_then_decays_along_a_cosine_to_min_lr():
    cfg = TrainConfig(optimizer="adamw", steps=1100, lr=1e-3, warmup_steps=100, min_lr=1e-4)
    assert learning_rate(cfg, 0) == pytest.approx(1e-5)
    assert learning_rate(cfg, 99) == pytest.approx(1e-3)
    assert learning_rate(cfg, 600) == pytest.approx(5.5e-4)  # halfway down the cosine
    assert learning_rate(cfg, 1100) == pytest.approx(1e-4)


def test_adamw_runs_with_weight_decay_and_learns(tmp_path, small_splits, tiny_model, info):
    cfg = TrainConfig(optimizer="adamw", steps=200, lr=3e-3, warmup_steps=20, weight_decay=0.1, eval_interval=100,
                      checkpoint_interval=100, diag_interval=100, update_interval=10)
    metrics = run(tmp_path, tiny_model, cfg, small_splits, info, **QUIET)
    assert metrics["val_loss"] < math.log(27) - 0.5
    assert "state" in torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]


@pytest.mark.parametrize("bad, message", [
    (dict(optimizer="adam"), "optimizer must be one of sgd, adamw"),
    (dict(steps=0), "steps must be >= 1"),
    (dict(lr=0), "lr must be > 0"),
    (dict(weight_decay=-1), "weight_decay must be >= 0"),
])
def test_train_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)
