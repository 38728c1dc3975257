"""Figures from saved run folders and evaluation JSON (never from inside the training loop).

One PNG per figure; labelled axes; legends name the loss of each run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hypros_lm.runs import RunFolder  # noqa: E402
from hypros_lm.scoring.scores import score_keys  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Lay out, write as PNG and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return RunFolder(run_dir).metrics()


def run_label(run_dir: Path) -> str:
    settings = RunFolder(run_dir).settings_dict()
    return f"{settings['loss']['name']} ({settings['model']['name']}, seed {settings['train']['seed']})"


def _series(records, split: str, key: str, x: str = "step"):
    rows = [r for r in records if r.get("split") == split and r.get(key) is not None]
    return [r[x] for r in rows], [r[key] for r in rows]


def learning_curves(run_dirs: list[Path], out: Path) -> list[Path]:
    """Validation NLL, each registered score the runs recorded, and ECE against steps and against wall-clock."""
    written = []
    runs = [(read_metrics(run), run_label(run)) for run in run_dirs]
    scores = score_keys({k for records, _ in runs for r in records if r.get("split") == "val" for k in r})
    panels = (("loss_log", "validation NLL"), *((f"loss_{k}", f"validation {k}") for k in scores),
              ("ece_10", "validation ECE (10 bins)"))
    for x, xlabel in (("step", "optimizer step"), ("elapsed_s", "wall-clock seconds")):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4))
        for records, label in runs:
            for ax, (key, _) in zip(axes, panels, strict=True):
                xs, ys = _series(records, "val", key, x)
                ax.plot(xs, ys, marker="o", ms=3, label=label)
        for ax, (_, title) in zip(axes, panels, strict=True):
            ax.set_xlabel(xlabel)
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("score (lower is better)")
        axes[-1].legend(fontsize=8)
        written.append(save_figure(fig, out / f"learning_curves_{'steps' if x == 'step' else 'wallclock'}.png"))
    return written


def lambda_and_grad_norms(run_dirs: list[Path], out: Path) -> Path:
    """λ(step), the engine's global gradient norm, and ‖∂L_log/∂h‖, ‖∂L_bounded/∂h‖ (log scale)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for run in run_dirs:
        records, label = read_metrics(run), run_label(run)
        axes[0].plot(*_series(records, "train", "lambda"), label=label)
        axes[1].plot(*_series(records, "train", "grad_norm"), label=label)
        for key, style in (("grad_norm_log", "-"), ("grad_norm_bounded", "--")):
            xs, ys = _series(records, "train", key)
            axes[2].plot(xs, ys, style, label=f"{label}: {key.removeprefix('grad_norm_')}")
    axes[0].set_ylabel("λ (weight of the bounded score)")
    axes[1].set_ylabel("global gradient norm")
    axes[2].set_ylabel("‖∂L/∂h‖ per component")
    for ax in axes[1:]:
        ax.set_yscale("log")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, out / "lambda_grad_norms.png")


def reliability_diagram(tables: dict[str, list[dict]], out: Path, name: str = "reliability.png") -> Path:
    """Accuracy against confidence per bin, one line per run, over the diagonal of perfect calibration."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
    for label, rows in tables.items():
        filled = [r for r in rows if r["count"]]
        ax.plot([r["confidence"] for r in filled], [r["accuracy"] for r in filled], marker="o", label=label)
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("top-1 accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out / name)


def entropy_histogram(entropies: dict[str, Any], out: Path, name: str = "entropy_hist.png") -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in entropies.items():
        ax.hist(values, bins=50, alpha=0.5, density=True, label=label)
    ax.set_xlabel("predictive entropy (nats)")
    ax.set_ylabel("density of tokens")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, out / name)
