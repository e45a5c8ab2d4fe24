"""Fold each Linear -> BatchNorm pair of a trained NameMLP into one Linear with bias.

In eval mode BatchNorm is a fixed per-channel affine map, y = (x - mean) * gamma / sqrt(var + eps) + beta,
so it merges into the Linear before it:
    W' = W * s (row-wise, one s per output unit),   b' = (b - mean) * s + beta,   s = gamma / sqrt(var + eps).
Computed in float64 and stored in float32, so folding adds no error beyond the final rounding.

The result is plain numpy: an embedding table and a list of dense layers (tanh or not). The reshapes
between them are implied: every flatten in the model (nn.Flatten, or FlattenConsecutive's grouping of
neighbouring positions) is a row-major reshape of the trailing dims, so before each layer the
activations are simply reshaped to (-1, in_features). That holds for flat and hierarchical models
alike, and it is all the ONNX exporter needs.

An Ensemble folds member by member, each head scaled by 1/K, so its mean logits are a plain sum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from training.model import Ensemble, FlattenConsecutive, NameMLP


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

    @property
    def vocab_size(self) -> int:
        return self.embedding.shape[0]

    def num_params(self) -> int:
        return self.embedding.size + sum(d.weight.size + d.bias.size for d in self.layers)

    def forward(self, idx: np.ndarray) -> np.ndarray:
        """(B, block_size) int -> (B, vocab) float32 logits; the exported graph does exactly this."""
        x = self.embedding[idx]  # (B, T, C)
        for d in self.layers:
            x = x.reshape(-1, d.weight.shape[1])  # concatenate consecutive positions, row-major
            x = x @ d.weight.T + d.bias
            if d.tanh:
                x = np.tanh(x)
        return x.reshape(len(idx), self.vocab_size)


@dataclass
class FoldedEnsemble:
    members: list[FoldedMLP]  # heads already scaled by 1/K: the ensemble's logits are the members' sum

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


def fold(model: NameMLP | Ensemble) -> FoldedMLP | FoldedEnsemble:
    """The eval-mode function of `model` (running or calibrated statistics) with no BatchNorm left."""
    if isinstance(model, Ensemble):
        return FoldedEnsemble([_fold_mlp(m, head_scale=1 / len(model.members)) for m in model.members])
    return _fold_mlp(model)


def _fold_mlp(model: NameMLP, head_scale: float = 1.0) -> FoldedMLP:
    mods = list(model.layers)
    if not isinstance(mods[0], nn.Embedding):
        raise ValueError(f"cannot fold: the first layer is {type(mods[0]).__name__}, not an Embedding")
    layers: list[Dense] = []
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
            layers.append(Dense(w, b, tanh))
        else:
            raise ValueError(f"cannot fold layer {i} ({type(m).__name__}): only Embedding, Flatten, "
                             f"FlattenConsecutive, Linear [-> BatchNorm] [-> Tanh] are foldable")
    if not layers or layers[-1].tanh:
        raise ValueError("cannot fold: the model must end in a Linear [-> BatchNorm] head producing logits")
    emb = mods[0].weight.detach().cpu().numpy().astype(np.float32)
    return FoldedMLP(emb, model.config.block_size, layers)


def fold_linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d | None,
                   scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') float32 for Linear followed by an eval-mode BatchNorm (or by nothing), times `scale`."""
    w = _f64(linear.weight)  # (out, in)
    b = _f64(linear.bias) if linear.bias is not None else np.zeros(w.shape[0])
    if bn is not None:
        if bn.running_mean is None or not bn.affine:
            raise ValueError("cannot fold a BatchNorm without running statistics and affine parameters")
        s = _f64(bn.weight) / np.sqrt(_f64(bn.running_var) + bn.eps)  # (out,)
        w = w * s[:, None]
        b = (b - _f64(bn.running_mean)) * s + _f64(bn.bias)
    return (w * scale).astype(np.float32), (b * scale).astype(np.float32)


def _f64(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()
