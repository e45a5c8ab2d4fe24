"""Ensembles (recipe.members > 1): members are ordinary seeded runs, the model is their mean logits, and it
folds, exports and publishes like a single model."""
import collections
import json
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from artifact.loader import load_current
from training.config import RecipeConfig
from training.data import load_corpus
from training.recipe import train as train_run
from training.rundir import load_model, member_dir
from training.export import INPUT, OUTPUT, to_onnx
from training.fold import fold
from training.model import Ensemble, ModelConfig, NameMLP
from training.publish import publish_run
from training.train import evaluate, run


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, small_splits, tiny_model, tiny_train, info):
    """Two tiny members (seeds 1 and 2) trained into one run directory: (run_dir, metrics)."""
    run_dir = tmp_path_factory.mktemp("ensemble")
    metrics = train_run(run_dir, tiny_model, tiny_train, small_splits, info, RecipeConfig(members=2),
                        progress=False, log=lambda *a: None)
    return run_dir, metrics


def test_ensemble_logits_are_the_mean_of_its_members():
    torch.manual_seed(0)
    config = ModelConfig(block_size=3, n_embd=4, n_hidden=8)
    members = [NameMLP(config).eval() for _ in range(3)]
    x = torch.randint(0, 27, (5, 3))
    logits, loss = Ensemble(members)(x, torch.zeros(5, dtype=torch.long))
    expected = sum(m(x)[0] for m in members) / 3
    assert torch.allclose(logits, expected, atol=1e-6)
    assert loss is not None and Ensemble(members).num_params() == 3 * members[0].num_params()


def test_ensemble_refuses_members_of_different_shapes():
    with pytest.raises(ValueError, match="share one ModelConfig"):
        Ensemble([NameMLP(ModelConfig(n_hidden=8)), NameMLP(ModelConfig(n_hidden=9))])


def test_ensemble_member_k_is_the_single_run_with_seed_plus_k(ensemble_run, tiny_run, tmp_path, small_splits,
                                                              tiny_model, tiny_train, info):
    run_dir, _ = ensemble_run
    single_seed_2 = tmp_path / "seed2"
    run(single_seed_2, tiny_model, replace(tiny_train, seed=tiny_train.seed + 1), small_splits, info,
        progress=False, log=lambda *a: None)
    ensemble = load_model(run_dir / "model.pt")
    for member, single in zip(ensemble.members, (tiny_run[0], single_seed_2)):
        reference = load_model(single / "model.pt").members[0].state_dict()
        assert all(torch.equal(v, reference[k]) for k, v in member.state_dict().items())


def test_ensemble_run_reports_the_mean_model_and_every_member(ensemble_run, small_splits):
    run_dir, metrics = ensemble_run
    model = load_model(run_dir / "model.pt")
    assert isinstance(model, Ensemble) and len(model.members) == 2
    assert metrics["val_loss"] == pytest.approx(evaluate(model, *small_splits.val), abs=1e-9)
    member_vals = [m["val"] for m in metrics["members"]]
    assert [m["seed"] for m in metrics["members"]] == [1, 2]
    assert member_vals == [json.loads((member_dir(run_dir, k) / "metrics.json").read_text())["val_loss"]
                           for k in range(2)]
    assert metrics["val_loss"] < min(member_vals)  # the point of an ensemble
    report = json.loads((run_dir / "diagnostics.json").read_text())
    assert len(report["members"]) == 2 and all("snapshots" in r for r in report["members"])
    member_warnings = [(k, w["name"]) for k, r in enumerate(report["members"]) for w in r["health"]["warnings"]]
    assert [(w["member"], w["name"]) for w in report["health"]["warnings"]] == member_warnings
    assert all(w["message"].startswith(f"member {w['member']}: ") for w in report["health"]["warnings"])
    assert report["health"]["ok"] == all(r["health"]["ok"] for r in report["members"])


def test_resuming_a_finished_ensemble_resumes_every_member_and_changes_nothing(ensemble_run, small_splits,
                                                                              tiny_model, tiny_train, info):
    run_dir, metrics = ensemble_run
    lines = []
    again = train_run(run_dir, tiny_model, tiny_train, small_splits, info, RecipeConfig(members=2), resume=True,
                      progress=False, log=lines.append)
    for k in range(2):
        assert f"resuming {member_dir(run_dir, k)} at step 300 of 300" in lines
    assert again["val_loss"] == metrics["val_loss"] and again["members"] == metrics["members"]


def test_folded_ensemble_matches_the_unfolded_mean_on_the_whole_val_set(ensemble_run, small_splits):
    model = load_model(ensemble_run[0] / "model.pt")
    X = small_splits.val[0]
    with torch.no_grad():
        ref = model(X)[0].numpy()
    folded = fold(model)
    assert len(folded.members) == 2 and folded.num_params() < model.num_params()
    assert np.abs(folded.forward(X.numpy()) - ref).max() <= 1e-5


@pytest.mark.parametrize("preset_name", ["lecture-b", "kaiming", "wavenet"])  # BN head; no BatchNorm; grouped
def test_three_member_ensembles_of_every_kind_fold_and_export_exactly(preset_name, sgd_steps):
    from training.model import preset

    overrides = {"lecture-b": dict(n_hidden=12, n_layers=3), "kaiming": dict(n_hidden=12),
                 "wavenet": dict(n_embd=4, n_hidden=12)}[preset_name]
    config = preset(preset_name, **overrides)
    torch.manual_seed(0)
    X = torch.randint(0, 27, (2000, config.block_size))
    Y = (X.sum(1) * 7) % 27  # a learnable rule, so weights and statistics move far from init
    model = Ensemble([sgd_steps(NameMLP(config), X, Y, steps=150) for _ in range(3)])
    with torch.no_grad():
        ref = model(X)[0].numpy()
    folded = fold(model)
    assert np.abs(folded.forward(X.numpy()) - ref).max() <= 1e-5
    graph = to_onnx(folded)
    ops = collections.Counter(n.op_type for n in graph.graph.node)
    assert ops["Add"] == 2 and "BatchNormalization" not in ops
    assert ops["MatMul"] == (preset_name == "wavenet")  # pair tables: one row index shared by all members
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.abs(session.run([OUTPUT], {INPUT: X.numpy()})[0] - ref).max() <= 1e-4


def test_ensemble_graph_is_one_chain_per_member_and_an_add(ensemble_run, small_splits):
    model = load_model(ensemble_run[0] / "model.pt")
    graph = to_onnx(fold(model))
    ops = collections.Counter(n.op_type for n in graph.graph.node)
    assert set(ops) <= {"Gather", "Reshape", "Gemm", "Tanh", "Add"}, ops  # flat: no table
    assert ops["Gather"] == 2 and ops["Add"] == 1 and ops["Gemm"] == 2 * 3  # 2 hidden layers + head each
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    X = small_splits.val[0]
    with torch.no_grad():
        ref = model(X)[0].numpy()
    logits = session.run([OUTPUT], {INPUT: X.numpy()})[0]
    assert np.abs(logits - ref).max() <= 1e-4
    alone = np.concatenate([session.run([OUTPUT], {INPUT: X[i:i + 1].numpy()})[0] for i in range(50)])
    assert np.abs(alone - logits[:50]).max() <= 1e-6  # batch-independent
    onnx.checker.check_model(graph, full_check=True)


def test_publish_run_publishes_an_ensemble_the_loader_self_tests(ensemble_run, names_file, tmp_path):
    run_dir, metrics = ensemble_run
    # The fixture's data entry is a placeholder; point config.json at the real file these splits came from.
    config = json.loads((run_dir / "config.json").read_text())
    corpus = load_corpus(names_file)
    config["data"].update(source=corpus.source, path=corpus.path, sha256=corpus.sha256)
    published_dir = tmp_path / "run"
    published_dir.mkdir()
    for name in ("model.pt", "metrics.json", "diagnostics.json"):
        (published_dir / name).write_bytes((run_dir / name).read_bytes())
    (published_dir / "config.json").write_text(json.dumps(config))
    for k in range(2):
        (published_dir / "plots" / f"member-{k}").mkdir(parents=True)
        (published_dir / "plots" / f"member-{k}" / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    version = publish_run(published_dir, tmp_path / "models", "names")
    served = load_current(tmp_path / "models", "names")  # checks sha256 and runs the probe set
    assert served.version == version
    m = served.manifest
    assert m.architecture["members"] == 2 and m.metrics["val"] == metrics["val_loss"]
    assert [x["val"] for x in m.metrics["members"]] == [x["val"] for x in metrics["members"]]
    assert m.metrics["verification"]["onnx_max_abs_diff"] <= 1e-4
    assert sorted(p.parent.name for p in (served.path / "report" / "plots").rglob("*.png")) == ["member-0",
                                                                                                 "member-1"]
    shipped = json.loads((served.path / "report" / "diagnostics.json").read_text())
    full = json.loads((run_dir / "diagnostics.json").read_text())
    assert len(shipped["members"]) == 2 and shipped["health"] == full["health"]
    # The report's figures are rounded to 4 significant digits, and only rounded.
    shipped_tanh = shipped["members"][1]["snapshots"][-1]["tanh"][0]
    full_tanh = full["members"][1]["snapshots"][-1]["tanh"][0]
    assert shipped_tanh["std"] == float(f"{full_tanh['std']:.4g}") != full_tanh["std"]
    assert shipped_tanh["grad_hist"]["x"] == [float(f"{v:.4g}") for v in full_tanh["grad_hist"]["x"]]


def test_members_trained_in_parallel_processes_equal_those_trained_one_after_the_other(ensemble_run, tmp_path,
                                                                                       small_splits, tiny_model,
                                                                                       tiny_train, info):
    metrics = train_run(tmp_path, tiny_model, tiny_train, small_splits, info, RecipeConfig(members=2, parallel=2),
                        progress=False, log=lambda *a: None)
    sequential = load_model(ensemble_run[0]).state_dict()
    assert all(torch.equal(v, sequential[k]) for k, v in load_model(tmp_path).state_dict().items())
    assert metrics["val_loss"] == ensemble_run[1]["val_loss"]
