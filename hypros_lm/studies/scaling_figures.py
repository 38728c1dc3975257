"""A scaling study's figures, drawn from its analysis (hypros_lm.studies.scaling_study.analyse_scaling): the laws with
their bands, the learning curves against compute with each objective's frontier, a forest plot of the exponents
and offsets, and Brier and ECE against size (one PNG each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hypros_lm.evaluation.figures import plt, save_figure


def _colours(variations: list[str]) -> dict[str, str]:
    return {v: f"C{i}" for i, v in enumerate(variations)}


def _ci(law: dict[str, Any], key: str, fmt: str = ".3g") -> str:
    lo, hi = law[f"{key}_ci"]
    return f"{law[key]:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def _log_x_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _law(res: dict[str, Any], variation: str, metric: str) -> dict[str, Any]:
    return next(law for law in res["laws"] if (law["variation"], law["metric"]) == (variation, metric))


def laws(res: dict[str, Any], variations: list[str], out: Path) -> Path:
    """Test NLL against parameters (log x): every run's point, each objective's law with its 95 % band, α [CI]."""
    colour = _colours(variations)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for v in variations:
        rows = [r for r in res["runs"] if r["variation"] == v]
        ax.plot([r["params"] for r in rows], [r["nll"] for r in rows], "o", ms=4, alpha=0.7, color=colour[v])
        law = _law(res, v, "nll")
        if "band" not in law:  # too few sizes or seeds: nothing was fitted
            ax.plot([], [], "o", color=colour[v], label=f"{v}: not identified ({law['reason']})")
            continue
        band, identified = law["band"], law["identified"]
        x = np.array(band["x"])
        label = (f"{v}: α = {_ci(law, 'alpha')}, E = {law['E']:.3g}" if identified
                 else f"{v}: not identified ({law['reason']}); its fit dashed")
        ax.plot(x, law["E"] + law["A"] * x ** (-law["alpha"]), "-" if identified else "--", color=colour[v], label=label)
        ax.fill_between(x, band["lo"], band["hi"], color=colour[v], alpha=0.2 if identified else 0.1)
    _log_x_axes(ax, "parameters (total)", "test NLL (nats per token)",
                "L(N) = E + A·N^−α, 95 % bootstrap bands (sizes resampled, then seeds within each size)")
    return save_figure(fig, out / "scaling.png")


def frontier(res: dict[str, Any], runs: list, variations: list[str], out: Path) -> Path:
    """Each run's validation NLL against training FLOPs (thin), each objective's lower envelope (thick) and its law."""
    colour = _colours(variations)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for r in runs:
        c = r.curve_compute
        ax.plot([p["flops"] for p in c], [p["loss_log"] for p in c], color=colour[r.variation], lw=0.6, alpha=0.35)
    for v in variations:
        front = res["frontier"][v]
        law = front["law"] if front["law"] and not front["law"]["at_bound"] else None  # α at its bound: no law
        label = f"{v}: no law" if law is None else f"{v}: frontier α_C = {law['alpha']:.3g}"
        ax.plot(front["compute"], front["nll"], color=colour[v], lw=2.5, label=label)
        if law is not None:
            c = np.array(front["compute"])
            ax.plot(c, law["E"] + law["A"] * c ** (-law["alpha"]), "--", color=colour[v], lw=1)
    _log_x_axes(ax, "training FLOPs (head and attention counted)", "validation NLL",
                "learning curves against compute and each objective's frontier L(C_min)")
    return save_figure(fig, out / "compute_frontier.png")


def forest(res: dict[str, Any], variations: list[str], out: Path) -> Path:
    """α and E of each objective's law of each metric, with 95 % intervals."""
    metrics = [m for m in ("nll", "brier") if any(_law(res, v, m)["identified"] for v in variations)] or ["nll"]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(9, 1.2 + 1.1 * len(variations) * len(metrics)), squeeze=False)
    for row, m in enumerate(metrics):
        for col, key in enumerate(("alpha", "E")):
            ax = axes[row][col]
            for i, v in enumerate(variations):
                law = _law(res, v, m)
                if not law["identified"]:
                    ax.text(0.02, i, f"{v}: not identified", va="center", transform=ax.get_yaxis_transform(), fontsize=8)
                    continue
                lo, hi = law[f"{key}_ci"]
                ax.errorbar([law[key]], [i], xerr=[[law[key] - lo], [hi - law[key]]], fmt="o", color=f"C{i}", capsize=4)
            ax.set_yticks(range(len(variations)), variations)
            ax.set_ylim(-0.7, len(variations) - 0.3)
            ax.set_title(f"test {m}: {'exponent α' if key == 'alpha' else 'offset E'} [95 % CI]", fontsize=10)
            ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, out / "scaling_forest.png")


def calibration_by_size(res: dict[str, Any], variations: list[str], out: Path) -> Path:
    """Test Brier and ECE against parameters: every run, and each objective's mean per size."""
    colour = _colours(variations)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, label) in zip(axes, (("brier", "test Brier"), ("ece_10", "test ECE (10 bins)")), strict=True):
        for v in variations:
            rows = [r for r in res["runs"] if r["variation"] == v]
            sizes = sorted({r["params"] for r in rows})
            ax.plot([r["params"] for r in rows], [r[key] for r in rows], "o", ms=3, alpha=0.5, color=colour[v])
            ax.plot(sizes, [np.mean([r[key] for r in rows if r["params"] == s]) for s in sizes], color=colour[v], label=v)
        ax.set_xscale("log")
        ax.set_xlabel("parameters (total)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    return save_figure(fig, out / "calibration_by_size.png")


def all_figures(res: dict[str, Any], runs: list, variations: list[str], out: Path) -> list[Path]:
    return [laws(res, variations, out), frontier(res, runs, variations, out), forest(res, variations, out),
            calibration_by_size(res, variations, out)]
