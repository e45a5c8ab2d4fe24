"""The exported graph: its shape and op types, and onnxruntime against the unfolded torch model."""
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.data import Corpus, make_splits, names_sha256
from training.export import INPUT, OPSET, OUTPUT, export, to_onnx
from training.fold import fold
from training.model import ModelConfig, NameMLP

VARIANTS = {
    "flat-head-bn": dict(block_size=3, n_embd=4, n_hidden=16, n_layers=2, head_batchnorm=True, head_scale=0.1),
    "hierarchical": dict(block_size=8, n_embd=4, n_hidden=12, n_layers=3, group=2),
}
FOLDED_OPS = {"Gather", "Reshape", "Gemm", "MatMul", "Add", "Tanh"}


def tiny_corpus(n=300, seed=0):
    syllables = ["ka", "li", "mo", "ra", "na", "el", "an", "jo", "su", "ti", "ve", "ro", "bi"]
    rng = random.Random(seed)
    names = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)})
    return Corpus(names, source="synthetic", sha256=names_sha256(names))


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, tmp_path_factory, sgd_steps):
    """(trained eval-mode model, val X, onnxruntime session on the exported file)."""
    kw = VARIANTS[request.param]
    splits = make_splits(tiny_corpus(), kw["block_size"])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = NameMLP(ModelConfig(vocab_size=splits.vocab.size, bn_momentum=0.1, **kw))
    sgd_steps(model, *splits.train, steps=300)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export(fold(model), path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return model, splits.val[0], session, path


def test_graph_passes_the_checker_and_holds_only_folded_ops(exported):
    model, _, _, path = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ops = [n.op_type for n in graph.graph.node]
    assert "BatchNormalization" not in ops
    assert set(ops) <= FOLDED_OPS, ops
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.layers)
    tabled = fold(model).members[0].table is not None  # the first layer as a table: no Gemm
    assert ops.count("Gemm") == n_linear - tabled  # one node per layer: the graph stays lean


def test_graph_io_is_int64_context_to_float_logits_with_dynamic_batch(exported):
    model, _, session, _ = exported
    (i,), (o,) = session.get_inputs(), session.get_outputs()
    assert (i.name, i.type, i.shape[1]) == (INPUT, "tensor(int64)", model.config.block_size)
    assert (o.name, o.type, o.shape[1]) == (OUTPUT, "tensor(float)", model.config.vocab_size)
    assert isinstance(i.shape[0], str) and isinstance(o.shape[0], str)
    for batch in (1, 7, 300):
        x = np.zeros((batch, model.config.block_size), dtype=np.int64)
        assert session.run([OUTPUT], {INPUT: x})[0].shape == (batch, model.config.vocab_size)


def test_onnxruntime_matches_the_unfolded_eval_model_on_the_whole_val_set(exported):
    model, X, session, _ = exported
    with torch.no_grad():
        ref = model(X)[0].numpy()
    got = session.run([OUTPUT], {INPUT: X.numpy()})[0]
    assert got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-4


def test_batch_row_equals_the_same_context_run_alone(exported):
    _, X, session, _ = exported
    xs = X[:32].numpy()
    batch = session.run([OUTPUT], {INPUT: xs})[0]
    for i in range(len(xs)):
        alone = session.run([OUTPUT], {INPUT: xs[i:i + 1]})[0][0]
        assert np.abs(batch[i] - alone).max() <= 1e-6


def test_export_of_model_a_is_five_nodes():
    model = NameMLP(ModelConfig(vocab_size=27)).eval()
    graph = to_onnx(fold(model))
    assert [n.op_type for n in graph.graph.node] == ["Gather", "Reshape", "Gemm", "Tanh", "Gemm"]
    assert OPSET >= 17


def test_export_of_a_hierarchical_model_reads_its_first_layer_from_a_pair_table():
    model = NameMLP(ModelConfig(vocab_size=27, block_size=8, n_embd=4, n_hidden=12, n_layers=3, group=2)).eval()
    graph = to_onnx(fold(model))
    assert [n.op_type for n in graph.graph.node] == ["MatMul", "Gather", "Reshape", "Gemm", "Tanh", "Reshape",
                                                    "Gemm", "Tanh", "Gemm"]
    assert [n.op_type for n in to_onnx(fold(model, table=False)).graph.node][:4] == [
        "Gather", "Reshape", "Gemm", "Tanh"]

