"""The lecture's diagnostic figures, drawn from diagnostics.json's content alone (matplotlib, Agg)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import matplotlib
from PIL import Image

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from training.rundir import PLOTS, read_diagnostics  # noqa: E402


def write_run_plots(run_dir: str | Path) -> None:
    """A run directory's plots/ from its diagnostics.json: one set per member, in plots/member-<k>/.
    The folder is replaced: publish ships all of it, so no stale figure may stay."""
    run_dir = Path(run_dir)
    report = read_diagnostics(run_dir)
    shutil.rmtree(run_dir / PLOTS, ignore_errors=True)
    for k, member_report in enumerate(report["members"]):
        write_plots(member_report, run_dir / PLOTS / f"member-{k}")


def write_plots(report: dict, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first, last = report["snapshots"][0], report["snapshots"][-1]
    figures = {
        "activations.png": histograms(first, last, "tanh", "hist", "tanh output",
                                      lambda e: f"mean {e['mean']:+.2f}, std {e['std']:.2f}, "
                                                f"saturated {e['saturated_pct']:.1f}%"),
        "activation_grads.png": histograms(first, last, "tanh", "grad_hist", "gradient at tanh output",
                                           lambda e: f"mean {e['grad_mean']:+.1e}, std {e['grad_std']:.1e}"),
        "weight_grads.png": histograms(first, last, "weights", "grad_hist", "weight gradient",
                                       lambda e: f"{tuple(e['shape'])} grad:data {e['grad_data_ratio']:.1e}"),
        "update_ratio.png": update_ratio(report["update_ratio"]),
        "loss.png": loss(report["loss_curve"]),
    }
    paths = []
    for name, fig in figures.items():
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.92, wspace=0.15)  # no layout engine: faster
        save_png(fig, out_dir / name)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def save_png(fig: plt.Figure, path: Path) -> None:
    """A 256-colour PNG: these line plots look the same in far fewer bytes than RGBA, which keeps a
    shipped artifact (report included) small."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    image = Image.open(buf).convert("RGB").quantize(colors=256)
    image.save(path, format="PNG", optimize=True)


def histograms(first: dict, last: dict, group: str, key: str, title: str, describe) -> plt.Figure:
    """One panel at init and one at the end, a line per layer, as the lecture draws them."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 4))
    for ax, snap in zip(axes, (first, last)):
        for entry in snap[group]:
            h = entry[key]
            ax.plot(h["x"], h["density"], label=f"{entry['name']}: {describe(entry)}")
        ax.set_title(f"{title} distribution, step {snap['step']:,}")
        ax.legend(fontsize=7)
    return fig


def update_ratio(ratios: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(14, 4))
    for name, series in ratios["log10"].items():
        ax.plot(ratios["steps"], series, label=name, linewidth=0.8)
    ax.axhline(-3, color="k", linestyle="--", label="-3 (about 1e-3 per step)")
    ax.set_xlabel("step")
    ax.set_ylabel("log10(update std / data std)")
    ax.set_title("update:data ratio per weight")
    ax.legend(fontsize=7)
    return fig


def loss(curve: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(10, 4))
    values = curve["log10_loss"]
    ax.plot([(i + 1) * curve["chunk"] for i in range(len(values))], values)
    ax.set_xlabel("step")
    ax.set_ylabel("log10 loss")
    ax.set_title(f"training loss, mean per {curve['chunk']:,} steps")
    return fig
