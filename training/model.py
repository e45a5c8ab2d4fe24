"""The lecture's BatchNorm MLP, read top to bottom: layers, init, forward (its ModelConfig and the
presets: training.config, which needs no torch). No I/O here.

Flat (group=0, makemore part 3): the whole context is concatenated, then n_layers hidden blocks.
Hierarchical (group=k, makemore part 5 "WaveNet"): each hidden block first merges k consecutive
positions, so block_size must be k ** n_layers. Both fold and export to a few plain ONNX ops (training.export).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.config import PRESETS, ModelConfig

TANH_GAIN = 5 / 3


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


class FlattenConsecutive(nn.Module):
    """(B, T, C) -> (B, T/n, C*n): concatenate n neighbouring positions; squeeze T when it hits 1."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        B, T, C = x.shape
        x = x.reshape(B, T // self.n, C * self.n)  # (B, T/n, C*n)
        return x.squeeze(1) if x.shape[1] == 1 else x


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm over every dim but the last, so (B, T, C) normalises each channel over batch and
    positions (lecture 5), while (B, C) is plain BatchNorm1d. Subclassing keeps torch's reference
    folding (fuse_linear_bn_eval) applicable.

    Calls F.batch_norm directly: BatchNorm1d.forward adds a num_batches_tracked increment (a tensor op
    per step, only needed when momentum is None, which ModelConfig rules out) and input checks, a
    measurable share of model A's training step (docs/training.md)."""

    def forward(self, x):
        if x.dim() == 3:
            return self._normalise(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        return self._normalise(x)  # (B, C)

    def _normalise(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)


class NameMLP(nn.Module):
    """makemore's interface: forward(idx (B, block_size) int64, targets (B,) or None) -> logits, loss."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = [nn.Embedding(c.vocab_size, c.n_embd)]
        if c.group:
            width = c.n_embd * c.group
        else:
            layers.append(nn.Flatten())  # (B, T, C) -> (B, T*C)
            width = c.n_embd * c.block_size
        for _ in range(c.n_layers):
            if c.group:
                layers.append(FlattenConsecutive(c.group))
            layers.append(nn.Linear(width, c.n_hidden, bias=not c.batchnorm))
            if c.batchnorm:
                layers.append(BatchNorm(c.n_hidden, eps=c.bn_eps, momentum=c.bn_momentum))
            layers.append(nn.Tanh())
            width = c.n_hidden * c.group if c.group else c.n_hidden
        layers.append(nn.Linear(c.n_hidden, c.vocab_size, bias=not c.head_batchnorm))
        if c.head_batchnorm:
            layers.append(BatchNorm(c.vocab_size, eps=c.bn_eps, momentum=c.bn_momentum))
        self.layers = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, idx, targets=None):
        logits = self.layers(idx)  # (B, vocab)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def init_weights(model: NameMLP) -> None:
    """The lecture's init, step by step: 'original' is plain N(0, 1) everywhere (a confidently
    wrong softmax and saturated tanh); 'fix-softmax' shrinks the last layer; 'fix-tanh' shrinks the
    hidden layers by hand; 'kaiming' uses gain / sqrt(fan_in) with the tanh gain 5/3."""
    c = model.config
    linears = [m for m in model.layers if isinstance(m, nn.Linear)]
    hidden, head = linears[:-1], linears[-1]
    nn.init.normal_(model.layers[0].weight)  # embedding table ~ N(0, 1)
    for lin in linears:
        nn.init.normal_(lin.weight)
        if lin.bias is not None:
            nn.init.normal_(lin.bias)
    if c.init in ("fix-tanh", "kaiming"):
        for lin in hidden:
            fan_in = lin.in_features
            lin.weight *= TANH_GAIN / math.sqrt(fan_in) if c.init == "kaiming" else 0.2
            if lin.bias is not None:
                lin.bias *= 0.01
    if c.init == "original":
        return
    if c.head_batchnorm:
        head.weight /= math.sqrt(head.in_features)
        model.layers[-1].weight *= c.head_scale  # gamma of the head BatchNorm
    else:
        head.weight *= c.head_scale
        head.bias.zero_()


class Ensemble(nn.Module):
    """NameMLP's interface over K independently trained members: the logits are their mean.

    Why: a single model here overfits long before its size runs out, while the mean logits of half-size
    members from different seeds generalise better at the same parameter count (figures:
    docs/training.md). Still foldable: each member folds on its own and the exported graph adds their
    logits. One model is an ensemble of one (as_ensemble), so every run has this interface."""

    def __init__(self, members: list[NameMLP]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if len({m.config for m in members}) != 1:
            raise ValueError("ensemble members must share one ModelConfig")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, idx, targets=None):
        logits = torch.stack([m(idx)[0] for m in self.members]).mean(0)  # (K, B, vocab) -> (B, vocab)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def num_params(self) -> int:
        return sum(m.num_params() for m in self.members)


def as_ensemble(model: NameMLP | Ensemble) -> Ensemble:
    """Every model as the mean of K >= 1 members: one model is an ensemble of one (its mean is itself)."""
    return model if isinstance(model, Ensemble) else Ensemble([model])
