"""The report's figure families: learning curves, calibration, robustness, sweeps (one PNG each; the scaling figures
in hypros_lm.studies.scaling_figures)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from hypros_lm.evaluation.figures import plt, save_figure
from hypros_lm.studies.results import GENERATION_SCORES, RunResult
from hypros_lm.studies.spec import grid_value

CURVES = (("loss_log", "validation NLL"), ("loss_brier", "validation Brier"), ("ece_10", "validation ECE (10 bins)"))


def _grouped(runs: list[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    groups: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for r in runs:
        groups[(r.model, r.variation)].append(r)
    return groups


def learning_curves(runs: list[RunResult], models: list[str], variations: list[str], out: Path, *, x: str) -> Path:
    """Mean ± std over seeds of each validation score, one row per model size."""
    groups = _grouped(runs)
    fig, axes = plt.subplots(len(models), len(CURVES), figsize=(5 * len(CURVES), 3.2 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        for j, (key, title) in enumerate(CURVES):
            ax = axes[i][j]
            for v in variations:
                rs = groups.get((m, v), [])
                if not rs:
                    continue
                n = min(len(r.curve) for r in rs)
                xs = np.mean([[p[x] for p in r.curve[:n]] for r in rs], axis=0)
                ys = np.array([[p[key] for p in r.curve[:n]] for r in rs])
                ax.plot(xs, ys.mean(0), label=v)
                ax.fill_between(xs, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), alpha=0.2)
            ax.set_title(f"{m}: {title}", fontsize=10)
            ax.set_xlabel("optimizer step" if x == "step" else "wall-clock seconds")
            ax.grid(alpha=0.3)
    axes[0][0].legend()
    return save_figure(fig, out / f"learning_curves_{'steps' if x == 'step' else 'wallclock'}.png")


def calibration(runs: list[RunResult], models: list[str], variations: list[str], out: Path, split: str = "test") -> Path:
    """Reliability diagrams from the test evaluation, bins summed over seeds, one panel per model."""
    groups = _grouped(runs)
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4.3), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect")
        for v in variations:
            tables = [r.evals[split]["reliability_10"] for r in groups.get((m, v), [])
                      if "reliability_10" in r.evals.get(split, {})]
            if not tables:
                continue
            count = np.sum([[row["count"] for row in t] for t in tables], axis=0)
            conf = np.sum([[(row["confidence"] or 0) * row["count"] for row in t] for t in tables], axis=0)
            acc = np.sum([[(row["accuracy"] or 0) * row["count"] for row in t] for t in tables], axis=0)
            ok = count > 0
            ax.plot(conf[ok] / count[ok], acc[ok] / count[ok], marker="o", ms=3, label=v)
        ax.set_title(f"{m}: reliability ({split})", fontsize=10)
        ax.set_xlabel("top-1 confidence")
        ax.set_ylabel("top-1 accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, out / "calibration.png")


def robustness(runs: list[RunResult], models: list[str], variations: list[str], sets: list[str], out: Path, *,
               primary: str | None = None) -> Path:
    """Bars of the task's generation score (BLEU, ROUGE-L: ``primary``, where it has one), NLL and ECE per
    variation on each evaluation set (mean ± std over seeds), largest model."""
    groups = _grouped(runs)
    m = models[-1]
    panels = [(primary, GENERATION_SCORES[primary])] if primary else []
    panels += [("loss_log", "NLL"), ("ece_10", "ECE (10 bins)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    width = 0.8 / max(1, len(variations))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for k, v in enumerate(variations):
            means, stds = [], []
            for s in sets:
                vals = [r.evals[s][key] for r in groups.get((m, v), []) if s in r.evals and key in r.evals[s]]
                means.append(np.mean(vals) if vals else np.nan)
                stds.append(np.std(vals) if vals else 0)
            ax.bar(np.arange(len(sets)) + k * width, means, width, yerr=stds, label=v, capsize=3)
        ax.set_xticks(np.arange(len(sets)) + width * (len(variations) - 1) / 2, sets,
                      rotation=25 if len(sets) > 3 else 0, ha="right" if len(sets) > 3 else "center")
        ax.set_title(f"{m}: {title} in and out of domain", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend()
    return save_figure(fig, out / "robustness.png")


def sweep_heatmaps(rows: list[dict], study, models: list[str], out: Path) -> Path:
    """One heat-map per model size of the sweep metric over the grid (mean over seeds, each cell annotated
    with mean ± std and * where it differs from the reference at Holm-adjusted p < α; the reference cell outlined).
    The reference's own values join the axes, so an off-grid default sits in its place on the surface;
    grid points without runs stay blank."""
    reference = study.sweep.variation
    names = list(study.grid_cells[reference])
    axes_values = []
    for name in names:
        values = {cell[name] for cell in study.grid_cells.values()}
        axes_values.append(sorted(values) if all(isinstance(v, (int, float)) for v in values) else list(values))
    ys, xs = (axes_values[0], axes_values[1]) if len(names) == 2 else ([None], axes_values[0])
    fig, panels = plt.subplots(1, len(models), figsize=(1.6 * len(xs) + 2.4, 1.2 * len(ys) + 1.6) if len(models) == 1
                               else (len(models) * (1.6 * len(xs) + 2.2), 1.2 * len(ys) + 1.6), squeeze=False)
    for ax, model in zip(panels[0], models, strict=True):
        grid = np.full((len(ys), len(xs)), np.nan)
        text = [["not run"] * len(xs) for _ in ys]
        for r in (r for r in rows if r["model"] == model):
            i = ys.index(r["values"][names[0]]) if len(names) == 2 else 0
            j = xs.index(r["values"][names[-1]])
            mean, std, _ = r["value"]
            grid[i, j] = mean
            text[i][j] = f"{mean:.4g}\n±{std:.2g}" + (" *" if r["significant"] else "") + ("\n(reference)" if r["reference"] else "")
            if r["reference"]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, ec="black"))
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis_r", aspect="auto")
        fig.colorbar(image, ax=ax, fraction=0.05)
        for i in range(len(ys)):
            for j in range(len(xs)):
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8,
                        color="black" if np.isfinite(grid[i, j]) else "grey",
                        bbox={"fc": "white", "alpha": 0.65, "lw": 0, "pad": 1.5})
        ax.set_xticks(range(len(xs)), [grid_value(v) for v in xs])
        ax.set_xlabel(names[-1])
        if len(names) == 2:
            ax.set_yticks(range(len(ys)), [grid_value(v) for v in ys])
            ax.set_ylabel(names[0])
        else:
            ax.set_yticks([])
        ax.set_title(f"{model}: test {study.sweep.metric} (* adjusted p < {study.criteria.alpha:g} vs reference)",
                     fontsize=9)
    return save_figure(fig, out / "sweep_heatmaps.png")
