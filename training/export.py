"""Folded weights -> an ONNX graph: context int64 [batch, block_size] -> logits float32 [batch, vocab].

The graph is written directly with onnx.helper from the folded numpy weights rather than traced with
torch.onnx.export, because:
- the folded model is a fixed pattern (Gather, then per layer [Reshape] Gemm [Tanh]), so building it is
  a few lines and gives exactly the nodes we want: one Gemm per layer (weights and bias in one
  kernel), no Shape/Squeeze/Transpose bookkeeping a tracer emits for FlattenConsecutive's
  (B, T, C) -> (B, T/n, C*n) view, and no BatchNormalization to hope an optimiser removes;
- it does not depend on the exporter of the day (torch 2.13's default dynamo exporter needs onnxscript,
  is slow, and its output has changed between releases), so the artifact is reproducible.
Hierarchical models stay 2-D throughout: (B, T, C) grouped to (B, T/n, C*n) is, in row-major order,
the same buffer as (B*T/n, C*n), so every grouping is one Reshape to (-1, in_features).

The graph is run once per generated character, so it is kept small: model A is 5 nodes.
Opset 17 with IR version 8 keeps it loadable by onnxruntime 1.14 and newer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.fold import FoldedMLP

OPSET = 17
IR_VERSION = 8
INPUT = "context"
OUTPUT = "logits"


def to_onnx(folded: FoldedMLP) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(folded.embedding.astype(np.float32), "embedding")]
    nodes = [helper.make_node("Gather", ["embedding", INPUT], ["emb"], axis=0)]  # (B, T, C)
    x, width = "emb", None  # width None: x is still (B, T, C)
    for k, d in enumerate(folded.layers):
        out_dim, in_dim = d.weight.shape
        if width != in_dim:
            inits.append(numpy_helper.from_array(np.array([-1, in_dim], dtype=np.int64), f"shape{k}"))
            nodes.append(helper.make_node("Reshape", [x, f"shape{k}"], [f"x{k}"]))
            x = f"x{k}"
        # (in, out): Gemm's plain layout; measured no slower than transB=1 and faster for small layers.
        inits.append(numpy_helper.from_array(np.ascontiguousarray(d.weight.T, dtype=np.float32), f"w{k}"))
        inits.append(numpy_helper.from_array(d.bias.astype(np.float32), f"b{k}"))
        last = k == len(folded.layers) - 1
        y = OUTPUT if last else f"h{k}"
        nodes.append(helper.make_node("Gemm", [x, f"w{k}", f"b{k}"], [f"z{k}" if d.tanh else y]))
        if d.tanh:
            nodes.append(helper.make_node("Tanh", [f"z{k}"], [y]))
        x, width = y, out_dim
    graph = helper.make_graph(
        nodes, "namegen_mlp",
        inputs=[helper.make_tensor_value_info(INPUT, TensorProto.INT64, ["batch", folded.block_size])],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", folded.vocab_size])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="namegen", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def export(folded: FoldedMLP, path: str | Path) -> None:
    onnx.save(to_onnx(folded), str(path))
