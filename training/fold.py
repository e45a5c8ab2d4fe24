"""Fold a trained model into plain numpy layers: each Linear -> BatchNorm pair becomes one Linear with
bias, and the first layer becomes a lookup table where that is small.

In eval mode BatchNorm is a fixed per-channel affine map, y = (x - mean) * gamma / sqrt(var + eps) + beta,
so it merges into the Linear before it:
    W' = W * s (row-wise, one s per output unit),   b' = (b - mean) * s + beta,   s = gamma / sqrt(var + eps).
Computed in float64 and stored in float32, so folding adds no error beyond the final rounding.

The first hidden layer, tanh(W' [E[c_1]; ...; E[c_k]] + b'), depends only on the k characters it reads
(k = group for a hierarchical model: 27 x 27 = 729 pairs for names). When vocab**k is at most
TABLE_MAX_ROWS it is stored as a table with one row per k-tuple (computed in float64), so the graph
reads it with one Gather instead of Gather, Reshape, Gemm and Tanh. A flat model reads its whole context
at once (vocab**block_size rows) and keeps its embedding and first Linear.

The reshapes between layers are implied: every flatten in the model (nn.Flatten, or
FlattenConsecutive's grouping of neighbouring positions) is a row-major reshape of the trailing dims,
so before each layer the activations are simply reshaped to (-1, in_features).

Every model folds as the mean of its K >= 1 members: each member folds on its own with its head
scaled by 1/K, so the mean logits are a plain sum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from training.model import Ensemble, FlattenConsecutive, NameMLP, as_ensemble

TABLE_MAX_ROWS = 4096  # tabulate the first layer when it reads so few character tuples


@dataclass
class Dense:
    weight: np.ndarray  # (out, in) float32, torch's layout
    bias: np.ndarray  # (out,) float32
    tanh: bool  # followed by tanh


@dataclass
class FoldedMLP:
    embedding: np.ndarray  # (vocab, n_embd) float32
    block_size: int
    layers: list[Dense]
    table: np.ndarray | None = None  # (vocab**k, out): the first layer's output per k-tuple; replaces
    # the embedding and layers[0] in forward() and in the graph (kept for reference and tests)
    table_width: int = 0  # k: characters per table row

    @property
    def vocab_size(self) -> int:
        return self.embedding.shape[0]

    def num_params(self) -> int:
        """The numbers the graph stores."""
        dense = sum(d.weight.size + d.bias.size for d in self.layers)
        if self.table is None:
            return self.embedding.size + dense
        return self.table.size + dense - self.layers[0].weight.size - self.layers[0].bias.size

    def table_index(self, idx: np.ndarray) -> np.ndarray:
        """(B, block_size) -> (B, block_size / k) table rows: each k-tuple as a base-vocab number."""
        return idx @ place_values(self.block_size, self.table_width, self.vocab_size)

    def forward(self, idx: np.ndarray) -> np.ndarray:
        """(B, block_size) int -> (B, vocab) float32 logits; the exported graph does exactly this."""
        if self.table is not None:
            x, layers = self.table[self.table_index(idx)], self.layers[1:]  # (B, T/k, out)
        else:
            x, layers = self.embedding[idx], self.layers  # (B, T, C)
        for d in layers:
            x = x.reshape(-1, d.weight.shape[1])  # concatenate consecutive positions, row-major
            x = x @ d.weight.T + d.bias
            if d.tanh:
                x = np.tanh(x)
        return x.reshape(len(idx), self.vocab_size)


def place_values(block_size: int, k: int, vocab: int) -> np.ndarray:
    """(block_size, block_size / k) int64: context @ this = each k-tuple's row in a vocab**k table."""
    P = np.zeros((block_size, block_size // k), dtype=np.int64)
    for j in range(block_size):
        P[j, j // k] = vocab ** (k - 1 - j % k)
    return P


@dataclass
class FoldedModel:
    members: list[FoldedMLP]  # heads already scaled by 1/K: the model's logits are the members' sum

    @property
    def block_size(self) -> int:
        return self.members[0].block_size

    @property
    def vocab_size(self) -> int:
        return self.members[0].vocab_size

    def num_params(self) -> int:
        return sum(m.num_params() for m in self.members)

    def forward(self, idx: np.ndarray) -> np.ndarray:
        """(B, block_size) int -> (B, vocab) float32; summed in member order, as the graph's Adds do."""
        return sum(m.forward(idx) for m in self.members)  # 0 + first member: exact, then member order


def fold(model: NameMLP | Ensemble, table: bool = True) -> FoldedModel:
    """The eval-mode function of `model` (running or calibrated statistics) with no BatchNorm left;
    table=False keeps the first layer as a Linear (a plainer graph to compare the table with)."""
    members = as_ensemble(model).members
    return FoldedModel([_fold_mlp(m, 1 / len(members), table) for m in members])


def _fold_mlp(model: NameMLP, head_scale: float, table: bool) -> FoldedMLP:
    mods = list(model.layers)
    if not isinstance(mods[0], nn.Embedding):
        raise ValueError(f"cannot fold: the first layer is {type(mods[0]).__name__}, not an Embedding")
    layers: list[Dense] = []
    first = None  # the first Linear's float64 (W', b'), for the table
    i = 1
    while i < len(mods):
        m = mods[i]
        if isinstance(m, (nn.Flatten, FlattenConsecutive)):
            i += 1  # implied by the next layer's in_features
        elif isinstance(m, nn.Linear):
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm1d) else None
            i += 2 if bn is not None else 1
            tanh = i < len(mods) and isinstance(mods[i], nn.Tanh)
            i += 1 if tanh else 0
            w, b = fold_linear_bn(m, bn, scale=head_scale if i == len(mods) else 1.0)
            layers.append(Dense(w.astype(np.float32), b.astype(np.float32), tanh))
            first = first or (w, b)
        else:
            raise ValueError(f"cannot fold layer {i} ({type(m).__name__}): only Embedding, Flatten, "
                             f"FlattenConsecutive, Linear [-> BatchNorm] [-> Tanh] are foldable")
    if not layers or layers[-1].tanh:
        raise ValueError("cannot fold: the model must end in a Linear [-> BatchNorm] head producing logits")
    emb = _f64(mods[0].weight)
    folded = FoldedMLP(emb.astype(np.float32), model.config.block_size, layers)
    k = layers[0].weight.shape[1] // emb.shape[1]  # characters the first layer reads
    if table and layers[0].tanh and len(layers) > 1 and emb.shape[0] ** k <= TABLE_MAX_ROWS:
        folded.table_width = k
        tuples = np.indices((emb.shape[0],) * k).reshape(k, -1).T  # (vocab**k, k), row r = r in base vocab
        w, b = first
        x = emb[tuples].reshape(len(tuples), -1)  # (vocab**k, k * n_embd) float64
        folded.table = np.tanh(x @ w.T + b).astype(np.float32)  # (vocab**k, out)
    return folded


def fold_linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d | None,
                   scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') float64 for Linear followed by an eval-mode BatchNorm (or by nothing), times `scale`."""
    w = _f64(linear.weight)  # (out, in)
    b = _f64(linear.bias) if linear.bias is not None else np.zeros(w.shape[0])
    if bn is not None:
        if bn.running_mean is None or not bn.affine:
            raise ValueError("cannot fold a BatchNorm without running statistics and affine parameters")
        s = _f64(bn.weight) / np.sqrt(_f64(bn.running_var) + bn.eps)  # (out,)
        w = w * s[:, None]
        b = (b - _f64(bn.running_mean)) * s + _f64(bn.bias)
    return w * scale, b * scale


def _f64(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()
