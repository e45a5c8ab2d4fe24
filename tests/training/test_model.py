"""The lecture's init claims and BatchNorm's eval-mode contract, on real data."""
import math

import pytest
import torch

from training import diagnostics
from training.model import ModelConfig, NameMLP, preset

LN_27 = math.log(27)


@pytest.fixture(scope="module")
def batch(corpus):
    from training.data import make_splits

    X, Y = make_splits(corpus, block_size=3).train
    ix = torch.randint(0, len(Y), (4096,), generator=torch.Generator().manual_seed(0))
    return X[ix], Y[ix]


def model(name, seed=0, **overrides):
    torch.manual_seed(seed)
    return NameMLP(preset(name, vocab_size=27, **overrides))


@pytest.mark.parametrize("name", ["kaiming", "batchnorm", "lecture-b", "wavenet"])
def test_initial_loss_is_near_ln_vocab_with_kaiming_init(name, batch, corpus):
    X, Y = batch
    if name == "wavenet":  # block size 8: build its own examples
        from training.data import make_splits

        X, Y = (t[:4096] for t in make_splits(corpus, block_size=8).train)
    assert diagnostics.initial_loss(model(name), X, Y) == pytest.approx(LN_27, abs=0.1)


def test_initial_loss_is_far_above_ln_vocab_with_the_original_init(batch):
    loss = diagnostics.initial_loss(model("original"), *batch)
    assert loss > LN_27 + 5  # the lecture saw 27: a confidently wrong softmax


def test_fixing_the_softmax_brings_the_initial_loss_down_to_ln_vocab(batch):
    assert diagnostics.initial_loss(model("fix-softmax"), *batch) == pytest.approx(LN_27, abs=0.2)


@pytest.mark.parametrize("name", ["batchnorm", "lecture-b"])
def test_tanh_saturation_at_init_is_under_5_percent_with_batchnorm(name, batch):
    snap = diagnostics.snapshot(model(name), *batch, step=0)
    assert len(snap["tanh"]) == model(name).config.n_layers
    for layer in snap["tanh"]:
        assert layer["saturated_pct"] < 5, layer["name"]
        assert 0.55 < layer["std"] < 0.75  # the lecture's ~0.65 with gain 5/3


def test_tanh_is_heavily_saturated_with_the_original_init(batch):
    snap = diagnostics.snapshot(model("original"), *batch, step=0)
    assert snap["tanh"][0]["saturated_pct"] > 50


@pytest.mark.parametrize("name, count", [("lecture-a", 12_097), ("lecture-b", 47_024)])
def test_parameter_counts_match_the_lecture(name, count):
    assert model(name).num_params() == count


@pytest.mark.parametrize("name", ["lecture-a", "lecture-b", "wavenet"])
def test_eval_mode_output_rows_do_not_depend_on_the_rest_of_the_batch(name):
    m = model(name)
    block = m.config.block_size
    X = torch.randint(0, 27, (64, block), generator=torch.Generator().manual_seed(1))
    m.train()
    for _ in range(3):  # move the running statistics away from their initial 0 / 1
        m(X)
    m.eval()
    with torch.no_grad():
        together, _ = m(X)
        for i in (0, 17, 63):
            alone, _ = m(X[i:i + 1])
            torch.testing.assert_close(alone[0], together[i], rtol=0, atol=1e-5)
            shuffled, _ = m(X.flip(0))
            torch.testing.assert_close(shuffled[63 - i], together[i], rtol=0, atol=1e-5)


def test_model_layers_follow_the_documented_structure():
    kinds = [type(layer).__name__ for layer in model("lecture-b").layers]
    assert kinds == ["Embedding", "Flatten"] + ["Linear", "BatchNorm", "Tanh"] * 5 + ["Linear", "BatchNorm"]
    kinds = [type(layer).__name__ for layer in model("wavenet").layers]
    assert kinds == ["Embedding"] + ["FlattenConsecutive", "Linear", "BatchNorm", "Tanh"] * 3 + ["Linear"]


def test_forward_returns_logits_and_the_mean_cross_entropy(batch):
    m = model("lecture-a")
    X, Y = batch
    logits, loss = m(X[:10], Y[:10])
    assert logits.shape == (10, 27)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, Y[:10]))
    assert m(X[:10])[1] is None


@pytest.mark.parametrize("bad, message", [
    (dict(group=1), "group must be 0"),
    (dict(group=2, n_layers=3, block_size=4), "block_size == group"),
    (dict(init="xavier"), "init must be one of"),
    (dict(n_hidden=0), "n_hidden must be >= 1"),
    (dict(batchnorm=False, head_batchnorm=True), "head_batchnorm needs batchnorm"),
])
def test_model_config_rejects_inconsistent_values(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**bad)


def test_unknown_preset_names_the_choices():
    with pytest.raises(KeyError, match="lecture-a"):
        preset("lecture-z")


def test_batchnorm_matches_torch_batchnorm1d_in_training_and_eval():
    from training.model import BatchNorm

    ours, ref = BatchNorm(6, momentum=0.01), torch.nn.BatchNorm1d(6, momentum=0.01)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0)) * 3 + 1
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x[:3]), ref(x[:3]))


def test_batchnorm_on_sequences_normalises_each_channel_over_batch_and_positions():
    from training.model import BatchNorm

    bn = BatchNorm(5, momentum=1.0)  # momentum 1: the running stats become this batch's
    x = torch.randn(8, 4, 5, generator=torch.Generator().manual_seed(0)) * 2 + 3  # (B, T, C)
    y = bn(x)
    flat = y.reshape(-1, 5)
    torch.testing.assert_close(flat.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(bn.running_mean, x.reshape(-1, 5).mean(0))
    torch.testing.assert_close(bn.running_var, x.reshape(-1, 5).var(0))
