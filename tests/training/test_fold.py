"""Folding on trained tiny models: flat, deep with a BatchNorm head, hierarchical, and no BatchNorm."""
import copy
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_linear_bn_eval

from training.data import Corpus, make_splits, names_sha256
from training.fold import TABLE_MAX_ROWS, fold
from training.model import ModelConfig, NameMLP

VARIANTS = {
    "flat": dict(block_size=3, n_embd=4, n_hidden=16),
    "deep-head-bn": dict(block_size=3, n_embd=4, n_hidden=12, n_layers=3, head_batchnorm=True, head_scale=0.1),
    "hierarchical": dict(block_size=4, n_embd=4, n_hidden=12, n_layers=2, group=2),
    "no-batchnorm": dict(block_size=3, n_embd=4, n_hidden=16, batchnorm=False),
}


def tiny_corpus(n=300, seed=0):
    syllables = ["ka", "li", "mo", "ra", "na", "el", "an", "jo", "su", "ti", "ve", "ro", "bi"]
    rng = random.Random(seed)
    names = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)})
    return Corpus(names, source="synthetic", sha256=names_sha256(names))


def train_tiny(config, splits, steps=300, seed=0):
    """A few hundred SGD steps: enough to move weights and BatchNorm statistics far from init."""
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on shared cores
    torch.manual_seed(seed)
    model = NameMLP(config)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    X, Y = splits.train
    for _ in range(steps):
        ix = torch.randint(0, len(X), (32,))
        _, loss = model(X[ix], Y[ix])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module", params=list(VARIANTS))
def trained(request):
    kw = VARIANTS[request.param]
    splits = make_splits(tiny_corpus(), kw["block_size"])
    config = ModelConfig(vocab_size=splits.vocab.size, bn_momentum=0.1, **kw)
    return train_tiny(config, splits), splits


def test_folded_logits_match_the_unfolded_eval_model_on_the_whole_val_set(trained):
    model, splits = trained
    X = splits.val[0]
    with torch.no_grad():
        ref = model(X)[0].numpy()
    got = fold(model).forward(X.numpy())
    assert got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-5


def test_fold_equals_torch_fuse_linear_bn_eval(trained):
    model, _ = trained
    mods = list(model.layers)
    expected = []  # (W, b) per Linear, folded by torch's own helper where a BatchNorm follows
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            lin = fuse_linear_bn_eval(copy.deepcopy(m), nxt) if isinstance(nxt, nn.BatchNorm1d) else m
            b = lin.bias if lin.bias is not None else torch.zeros(lin.out_features)
            expected.append((lin.weight.detach().numpy(), b.detach().numpy()))
    (folded,) = fold(model).members
    assert len(folded.layers) == len(expected)
    for d, (w, b) in zip(folded.layers, expected):
        np.testing.assert_allclose(d.weight, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(d.bias, b, rtol=1e-5, atol=1e-6)


def test_fold_uses_the_stored_statistics_not_the_batch(trained):
    model, splits = trained
    bns = [m for m in model.layers if isinstance(m, nn.BatchNorm1d)]
    if not bns:
        pytest.skip("no BatchNorm: no statistics to fold")
    before = fold(model).forward(splits.val[0][:4].numpy())
    with torch.no_grad():
        bns[0].running_mean += 1.0
    after = fold(model).forward(splits.val[0][:4].numpy())
    with torch.no_grad():
        bns[0].running_mean -= 1.0
    assert np.abs(after - before).max() > 1e-3


def test_fold_keeps_only_dense_layers_with_tanh_between():
    model = NameMLP(ModelConfig(vocab_size=5, n_embd=2, n_hidden=4, n_layers=3, head_batchnorm=True)).eval()
    (folded,) = fold(model).members
    assert [d.tanh for d in folded.layers] == [True, True, True, False]
    assert [d.weight.shape for d in folded.layers] == [(4, 6), (4, 4), (4, 4), (5, 4)]
    assert all(d.bias.dtype == np.float32 for d in folded.layers)


def test_fold_refuses_a_layer_it_cannot_fold():
    model = NameMLP(ModelConfig(vocab_size=5, n_embd=2, n_hidden=4)).eval()
    model.layers.insert(3, nn.ReLU())
    with pytest.raises(ValueError, match="cannot fold layer 3 \\(ReLU\\)"):
        fold(model)


def test_the_first_layer_becomes_one_row_per_tuple_of_characters_when_that_is_few(trained):
    model, splits = trained
    (plain,) = fold(model, table=False).members
    (tabled,) = fold(model).members
    V, first = model.config.vocab_size, plain.layers[0]
    k = first.weight.shape[1] // model.config.n_embd  # characters the first layer reads
    if V ** k > TABLE_MAX_ROWS or not first.tanh:
        assert tabled.table is None
        return
    assert tabled.table.shape == (V ** k, first.weight.shape[0]) and tabled.table_width == k
    tuples = np.indices((V,) * k).reshape(k, -1).T  # row r is r written in base V
    x = plain.embedding[tuples].reshape(V ** k, -1)  # (V**k, k * n_embd)
    assert np.abs(tabled.table - np.tanh(x @ first.weight.T + first.bias)).max() <= 1e-6
    X = splits.val[0].numpy()
    assert np.abs(tabled.forward(X) - plain.forward(X)).max() <= 1e-5


def test_a_hierarchical_names_model_tabulates_its_729_character_pairs():
    model = NameMLP(ModelConfig(vocab_size=27, block_size=8, n_embd=4, n_hidden=12, n_layers=3, group=2)).eval()
    (folded,) = fold(model).members
    assert folded.table.shape == (729, 12)
    assert fold(NameMLP(ModelConfig(vocab_size=27)).eval()).members[0].table is None  # model A: 27**3 rows
