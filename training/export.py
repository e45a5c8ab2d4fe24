"""Folded weights -> an ONNX graph: context int64 [batch, block_size] -> logits float32 [batch, vocab].

The graph is written directly with onnx.helper from the folded numpy weights rather than traced with
torch.onnx.export, because:
- the folded model is a fixed pattern, so building it is a few lines and gives exactly the nodes we
  want: one Gemm per layer (weights and bias in one kernel), no Shape/Squeeze/Transpose bookkeeping a
  tracer emits for FlattenConsecutive's (B, T, C) -> (B, T/n, C*n) view, and no BatchNormalization to
  hope an optimiser removes;
- it does not depend on the exporter of the day (torch 2.13's default dynamo exporter needs onnxscript,
  is slow, and its output has changed between releases), so the artifact is reproducible.
Hierarchical models stay 2-D throughout: (B, T, C) grouped to (B, T/n, C*n) is, in row-major order,
the same buffer as (B*T/n, C*n), so every grouping is one Reshape to (-1, in_features).

The graph is run once per generated character, and for small batches its cost is set by its count of
nodes more than by its arithmetic, so it is kept small. Per member:
- a first layer tabulated by training.fold: Gather (the rows of the table, which one MatMul shared by
  all members computes: the int64 context times place values gives each k-tuple's row), else Gather
  (the embedding);
- then per layer [Reshape] Gemm [Tanh].
An ensemble is one such chain per member (names prefixed m0_, m1_, ...) and Adds summing their logits.
Opset 17 with IR version 8 keeps it loadable by onnxruntime 1.14 and newer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.fold import FoldedMLP, FoldedModel, place_values

OPSET = 17
IR_VERSION = 8
INPUT = "context"
OUTPUT = "logits"
ROWS = "table_rows"  # (B, block_size / k) int64: every member's table rows (members share one table width)


def to_onnx(folded: FoldedModel) -> onnx.ModelProto:
    inits, nodes = [], []
    members = folded.members
    if members[0].table is not None:  # context @ place values = the table row of each k-tuple of characters
        k = members[0].table_width
        inits.append(numpy_helper.from_array(place_values(folded.block_size, k, folded.vocab_size), "place_values"))
        nodes.append(helper.make_node("MatMul", [INPUT, "place_values"], [ROWS]))  # (B, T/k) int64, shared
    if len(members) == 1:
        _chain(members[0], "", OUTPUT, inits, nodes)
    else:  # one chain per member; their logits (heads scaled by 1/K) summed by Adds
        total = _chain(members[0], "m0_", "m0_logits", inits, nodes)
        for k, m in enumerate(members[1:], 1):
            y = _chain(m, f"m{k}_", f"m{k}_logits", inits, nodes)
            out = OUTPUT if k == len(members) - 1 else f"sum{k}"
            nodes.append(helper.make_node("Add", [total, y], [out]))
            total = out
    graph = helper.make_graph(
        nodes, "namegen_mlp",
        inputs=[helper.make_tensor_value_info(INPUT, TensorProto.INT64, ["batch", folded.block_size])],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", folded.vocab_size])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="namegen", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _chain(folded: FoldedMLP, prefix: str, output: str, inits: list, nodes: list) -> str:
    """Append one folded MLP's nodes ending in `output`: its first layer as a Gather from its table (at
    the rows to_onnx computed) or from its embedding, then per remaining layer [Reshape] Gemm [Tanh]."""
    def init(array, name):
        inits.append(numpy_helper.from_array(array, prefix + name))
        return prefix + name

    if folded.table is not None:
        table = init(folded.table, "table")
        nodes.append(helper.make_node("Gather", [table, ROWS], [prefix + "h_first"], axis=0))
        x, layers = prefix + "h_first", folded.layers[1:]  # (B, T/k, out)
    else:
        emb = init(folded.embedding.astype(np.float32), "embedding")
        nodes.append(helper.make_node("Gather", [emb, INPUT], [prefix + "emb"], axis=0))  # (B, T, C)
        x, layers = prefix + "emb", folded.layers
    width = None  # None: x is still 3-D
    for k, d in enumerate(layers):
        out_dim, in_dim = d.weight.shape
        if width != in_dim:
            shape = init(np.array([-1, in_dim], dtype=np.int64), f"shape{k}")
            nodes.append(helper.make_node("Reshape", [x, shape], [f"{prefix}x{k}"]))
            x = f"{prefix}x{k}"
        # (in, out): Gemm's plain layout; measured no slower than transB=1 and faster for small layers.
        w = init(np.ascontiguousarray(d.weight.T, dtype=np.float32), f"w{k}")
        b = init(d.bias.astype(np.float32), f"b{k}")
        last = k == len(layers) - 1
        y = output if last else f"{prefix}h{k}"
        z = f"{prefix}z{k}" if d.tanh else y
        nodes.append(helper.make_node("Gemm", [x, w, b], [z]))
        if d.tanh:
            nodes.append(helper.make_node("Tanh", [z], [y]))
        x, width = y, out_dim
    return output


def export(folded: FoldedModel, path: str | Path) -> None:
    onnx.save(to_onnx(folded), str(path))
