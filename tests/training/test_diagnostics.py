"""Diagnostics: the figures for every layer, the health verdict, and the plots drawn from them."""
import json
import math

import pytest
import torch
from PIL import Image

from training import diagnostics
from training.model import NameMLP, preset
from training.plots import write_plots


@pytest.fixture(scope="module")
def report(tiny_run):
    """The one member's report of a one-member run."""
    (member,) = json.loads((tiny_run[0] / "diagnostics.json").read_text())["members"]
    return member


def test_diagnostics_json_holds_every_tanh_layer_and_weight_at_init_intervals_and_end(report, tiny_model):
    assert [s["step"] for s in report["snapshots"]] == [0, 100, 200, 300]
    weights = ["layers.0.weight", "layers.2.weight", "layers.5.weight", "layers.8.weight"]  # every 2-D parameter
    for snap in report["snapshots"]:
        assert [t["name"] for t in snap["tanh"]] == ["layers.4 (Tanh)", "layers.7 (Tanh)"]
        for layer in snap["tanh"]:
            assert -1 < layer["mean"] < 1 and 0 < layer["std"] < 1 and 0 <= layer["saturated_pct"] <= 100
            assert layer["grad_std"] > 0
            assert len(layer["hist"]["x"]) == len(layer["grad_hist"]["density"]) == diagnostics.HIST_BINS
        assert [w["name"] for w in snap["weights"]] == weights
        for w in snap["weights"]:
            assert w["grad_data_ratio"] == pytest.approx(w["grad_std"] / w["data_std"])
    assert report["update_ratio"]["steps"] == list(range(0, 300, 10))
    assert set(report["update_ratio"]["log10"]) == set(weights)
    assert all(len(r) == 30 and all(-8 < x < 0 for x in r) for r in report["update_ratio"]["log10"].values())
    assert report["loss_curve"]["chunk"] == 15 and len(report["loss_curve"]["log10_loss"]) == 20
    assert report["initial_loss"] == pytest.approx(math.log(27), abs=0.1)
    assert set(report["health"]) == {"ok", "warnings"}


def test_plots_are_written_from_the_diagnostics(report, tmp_path):
    paths = write_plots(report, tmp_path / "plots")
    names = {p.name for p in paths}
    assert names == {"activations.png", "activation_grads.png", "weight_grads.png", "update_ratio.png", "loss.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5_000
        with Image.open(p) as image:  # a drawn figure: full size, many colours (lines, text, legend)
            assert image.size[0] >= 500 and len(image.getcolors(256)) > 20


def test_snapshot_leaves_the_model_untouched(small_splits, tiny_model):
    model = NameMLP(tiny_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X, Y = small_splits.train
    diagnostics.snapshot(model, X[:32], Y[:32], step=0)
    diagnostics.initial_loss(model, X[:256], Y[:256])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_gradient_at_tanh_outputs_is_similar_across_layers_with_batchnorm(small_splits):
    torch.manual_seed(0)
    model = NameMLP(preset("lecture-b", vocab_size=27))
    X, Y = small_splits.train
    snap = diagnostics.snapshot(model, X[:32], Y[:32], step=0)
    grads = [t["grad_std"] for t in snap["tanh"]]
    assert max(grads) / min(grads) < 3  # the lecture's "roughly the same in every layer"


def test_health_is_ok_for_a_kaiming_batchnorm_init(small_splits):
    torch.manual_seed(0)
    model = NameMLP(preset("batchnorm", vocab_size=27))
    X, Y = small_splits.train
    init = diagnostics.snapshot(model, X[:512], Y[:512], step=0)
    verdict = diagnostics.health(diagnostics.initial_loss(model, X[:512], Y[:512]), 27, init,
                                 {"layers.2.weight": [-3.1, -2.9] * 10})
    assert verdict == {"ok": True, "warnings": []}


def test_health_names_the_confidently_wrong_softmax_and_the_saturated_tanh(small_splits):
    torch.manual_seed(0)
    model = NameMLP(preset("original", vocab_size=27))
    X, Y = small_splits.train
    init = diagnostics.snapshot(model, X[:512], Y[:512], step=0)
    verdict = diagnostics.health(diagnostics.initial_loss(model, X[:512], Y[:512]), 27, init, {})
    assert not verdict["ok"]
    assert [w["name"] for w in verdict["warnings"]] == ["initial_loss_high", "tanh_saturated_at_init"]
    assert "layers.3 (Tanh)" in verdict["warnings"][1]["message"]


def test_health_warns_when_update_ratio_stays_outside_the_band_in_the_last_tenth():
    init = {"tanh": []}
    slow = [-3.0] * 90 + [-4.5] * 10  # the last tenth all below -4
    noisy = [-3.0] * 90 + [-4.5] * 9 + [-3.5]  # dips but comes back inside once: not "stays"
    fast = [-3.0] * 90 + [-1.5] * 10
    verdict = diagnostics.health(3.3, 27, init, {"slow": slow, "noisy": noisy, "fast": fast})
    messages = [w["message"] for w in verdict["warnings"]]
    assert [w["name"] for w in verdict["warnings"]] == ["update_ratio_out_of_range"] * 2
    assert messages[0].startswith("slow:") and "too low" in messages[0]
    assert messages[1].startswith("fast:") and "too high" in messages[1]


def test_update_ratio_is_log10_of_step_std_over_data_std():
    before = [torch.tensor([1.0, -1.0, 1.0, -1.0])]
    after = [before[0] + torch.tensor([1e-3, -1e-3, 1e-3, -1e-3])]
    assert diagnostics.update_ratios(before, after) == [pytest.approx(-3.0, abs=1e-4)]


def test_loss_curve_is_log10_of_chunk_means_dropping_a_partial_chunk():
    curve = diagnostics.loss_curve([10.0, 10.0, 1.0, 1.0, 5.0], chunk=2)
    assert curve == [pytest.approx(1.0), pytest.approx(0.0)]


def test_a_run_that_memorised_a_few_hundred_names_is_warned_with_what_to_try(corpus, tmp_path, tiny_run):
    from training.data import load_corpus, make_splits
    from training.model import ModelConfig
    from training.train import TrainConfig, run

    few = tmp_path / "few.txt"
    few.write_text("\n".join(corpus.names[::100]) + "\n")  # 300 names
    splits = make_splits(load_corpus(few), block_size=3)
    model = ModelConfig(vocab_size=splits.vocab.size, block_size=3, n_embd=16, n_hidden=128, n_layers=2)
    train = TrainConfig(steps=1500, batch_size=32, lr=0.1, lr_decay_step=1000, eval_interval=500,
                        checkpoint_interval=500, diag_interval=500, update_interval=50, seed=1)
    metrics = run(tmp_path / "run", model, train, splits, {"source": str(few), "sha256": "0" * 64, "seed": 42},
                  progress=False, log=lambda *a: None)
    health = json.loads((tmp_path / "run" / "diagnostics.json").read_text())["health"]

    assert metrics["val_loss"] > metrics["train_loss"] * (1 + diagnostics.OVERFIT_GAP)
    assert not health["ok"] and "overfitting" in [w["name"] for w in health["warnings"]]
    message = next(w["message"] for w in health["warnings"] if w["name"] == "overfitting")
    for advice in ("fewer steps", "more weight decay", "a smaller model", "more names"):
        assert advice in message
    # The same kind of model on 3,739 names: no such warning.
    tiny_health = json.loads((tiny_run[0] / "diagnostics.json").read_text())["health"]
    assert "overfitting" not in [w["name"] for w in tiny_health["warnings"]]


def test_overfitting_is_judged_by_the_gap_between_train_and_val():
    assert diagnostics.overfitting(1.03, 1.43)["name"] == "overfitting"  # 39% above train
    assert diagnostics.overfitting(1.77, 1.96) is None  # 11%: a corpus of tens of thousands of names
    assert diagnostics.overfitting(None, 1.43) is None
