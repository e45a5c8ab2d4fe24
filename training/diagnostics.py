"""The lecture's health checks of a network, as pure functions returning plain dicts (JSON-ready).

- `snapshot`: one forward/backward pass on a diagnostic batch in train mode, on a copy of the model
  (so neither the running statistics nor the gradients of the real one change): per tanh layer the
  output mean, std, saturation % (|t| > 0.97) and the std of the gradient at that output; per weight
  matrix (every 2-D parameter, the embedding table included, as the lecture does) its gradient std and
  grad:data ratio; histograms of each, for the plots.
- `update_ratios`: log10(update.std() / data.std()) per weight for one optimizer step (the lecture's
  lr * grad.std() / data.std() for plain SGD, and the true step for AdamW). Should hover near -3.
- `loss_curve`: log10 of the loss averaged over chunks of steps.
- `health`: named warnings from the above, and from the final train and val losses.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SATURATION = 0.97  # |tanh| above this passes (almost) no gradient: 1 - 0.97**2 = 0.06
HIST_BINS = 50
INIT_LOSS_MARGIN = 0.3  # warn when the initial loss exceeds ln(vocab) + this
INIT_SATURATION_PCT = 10.0  # warn when a tanh layer starts more saturated than this
UPDATE_RANGE = (-4.0, -2.0)  # healthy log10 update:data, over the last tenth of training
# Warn when val loss exceeds train loss by more than this fraction of train: the model then scores its
# own training names far better than names it has not seen, i.e. it memorised its corpus. A run on a
# corpus of tens of thousands of names stays well inside it; one on a few hundred names does not.
OVERFIT_GAP = 0.2


def histogram(t: torch.Tensor, bins: int = HIST_BINS) -> dict:
    """Density histogram as bin centres and densities (what the lecture plots)."""
    t = t.detach().double().flatten()
    hi = t.abs().max().item() or 1.0  # symmetric range, so layers line up on one plot
    density, edges = torch.histogram(t, bins=bins, range=(-hi, hi), density=True)
    centres = (edges[:-1] + edges[1:]) / 2
    return {"x": centres.tolist(), "density": density.tolist()}


def weight_names(model: nn.Module) -> list[str]:
    """The weight matrices the lecture watches: every 2-D parameter."""
    return [name for name, p in model.named_parameters() if p.dim() == 2]


def snapshot(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, step: int) -> dict:
    """Activation and gradient statistics for one train-mode forward/backward on (X, Y)."""
    model = copy.deepcopy(model)  # train mode updates running stats; backward fills grads
    model.train()
    outputs: list[tuple[str, torch.Tensor]] = []

    def keep(name):
        def hook(module, inputs, out):
            out.retain_grad()
            outputs.append((name, out))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Tanh):
            module.register_forward_hook(keep(f"{name} (Tanh)"))
    logits, _ = model(X)
    loss = F.cross_entropy(logits, Y)
    loss.backward()

    tanh = []
    for name, t in outputs:
        t_ = t.detach()
        tanh.append({
            "name": name,
            "mean": t_.mean().item(),
            "std": t_.std().item(),
            "saturated_pct": (t_.abs() > SATURATION).float().mean().item() * 100,
            "grad_mean": t.grad.mean().item(),
            "grad_std": t.grad.std().item(),
            "hist": histogram(t_),
            "grad_hist": histogram(t.grad),
        })
    params = dict(model.named_parameters())
    weights = []
    for name in weight_names(model):
        p = params[name]
        weights.append({
            "name": name,
            "shape": list(p.shape),
            "data_std": p.detach().std().item(),
            "grad_mean": p.grad.mean().item(),
            "grad_std": p.grad.std().item(),
            "grad_data_ratio": (p.grad.std() / p.detach().std()).item(),
            "grad_hist": histogram(p.grad),
        })
    return {"step": step, "loss": loss.item(), "tanh": tanh, "weights": weights}


@torch.no_grad()
def initial_loss(model: nn.Module, X: torch.Tensor, Y: torch.Tensor) -> float:
    """The loss a first training step sees (train mode: BatchNorm normalises with batch statistics),
    measured on a copy so the model's running statistics stay untouched."""
    model = copy.deepcopy(model).train()
    logits, _ = model(X)
    return F.cross_entropy(logits, Y).item()


@torch.no_grad()
def update_ratios(before: list[torch.Tensor], after: list[torch.Tensor]) -> list[float]:
    """log10(std of the step / std of the data) per weight; -inf-safe for a zero step."""
    return [math.log10(max((a - b).std().item(), 1e-30) / max(b.std().item(), 1e-30))
            for b, a in zip(before, after)]


def loss_curve(losses: list[float], chunk: int = 1000) -> list[float]:
    """log10 of the mean loss over each full chunk of steps (a partial last chunk is dropped)."""
    t = torch.tensor(losses, dtype=torch.float64)
    n = len(t) // chunk * chunk
    return t[:n].view(-1, chunk).mean(1).log10().tolist() if n else []


def health(initial_loss: float, vocab_size: int, init: dict, update_log10: dict[str, list[float]],
           train_loss: float | None = None, val_loss: float | None = None) -> dict:
    """Named warnings from the initial loss, the init snapshot, the update:data records and the gap
    between the final train and val losses."""
    warnings = []
    expected = math.log(vocab_size)
    if initial_loss > expected + INIT_LOSS_MARGIN:
        warnings.append({"name": "initial_loss_high", "message":
                         f"initial loss {initial_loss:.3f} is above ln({vocab_size}) + {INIT_LOSS_MARGIN} = "
                         f"{expected + INIT_LOSS_MARGIN:.3f}: the softmax is confidently wrong at init"})
    for layer in init["tanh"]:
        if layer["saturated_pct"] > INIT_SATURATION_PCT:
            warnings.append({"name": "tanh_saturated_at_init", "message":
                             f"{layer['name']}: {layer['saturated_pct']:.1f}% of outputs have |t| > {SATURATION} "
                             f"at init (over {INIT_SATURATION_PCT:.0f}%): those units pass almost no gradient"})
    lo, hi = UPDATE_RANGE
    for name, series in update_log10.items():
        tail = series[len(series) - max(1, len(series) // 10):]  # the last tenth of the records
        if tail and all(not lo <= r <= hi for r in tail):
            mean = sum(tail) / len(tail)
            warnings.append({"name": "update_ratio_out_of_range", "message":
                             f"{name}: log10 update:data stays outside [{lo:g}, {hi:g}] over the last tenth "
                             f"of training (mean {mean:.2f}): the learning rate is too "
                             f"{'low' if mean < lo else 'high'} for this weight"})
    overfit = overfitting(train_loss, val_loss)
    if overfit:
        warnings.append(overfit)
    return {"ok": not warnings, "warnings": warnings}


def overfitting(train_loss: float | None, val_loss: float | None) -> dict | None:
    """A warning when the train/val gap says the model memorised its corpus, with what to try."""
    if train_loss is None or val_loss is None or not val_loss > train_loss * (1 + OVERFIT_GAP):
        return None
    return {"name": "overfitting", "message":
            f"val loss {val_loss:.3f} is {val_loss / train_loss - 1:.0%} above train loss {train_loss:.3f} "
            f"(more than {OVERFIT_GAP:.0%}): the model memorised its training names. Try fewer steps, more "
            f"weight decay, a smaller model (n_hidden, n_embd), or more names"}
