"""A scaling study's analysis from its finished runs: per objective and metric the law in parameters with intervals
that resample sizes and seeds, the shared-exponent test, the α and slope differences against log-loss, the compute
multiplier, the local slopes between successive sizes, the fits on every window of ≥ 4 sizes, the leave-the-largest-out
prediction and the compute frontier. Numbers only, in records that name their objective and metric (the report
words them). The fit window is the study file's rule (``scaling.fit_from``: the smallest size fitted)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hypros_lm.studies.scaling import (
    Points,
    compute_multiplier,
    envelope,
    fit_law,
    identified_law,
    interval,
    leave_largest_out,
    local_slopes,
    log_linear,
    shared_exponent_test,
    why_not_identified,
    window_slope_differences,
    windows,
)

METRICS = (("nll", "test NLL"), ("brier", "test Brier"), ("ece_10", "test ECE (10 bins)"))
INTERVALS = "the sizes with replacement, then the seeds within each size (misspecification and seed noise)"


def _points(runs: list, metric: str) -> Points:
    return Points.of([r.params for r in runs], [r.test[metric] for r in runs], [r.seed for r in runs])


def _public(fit: dict[str, Any]) -> dict[str, Any]:
    """A fit without its bootstrap samples (what analysis.json keeps)."""
    return {k: v for k, v in fit.items() if k != "samples"}


def analyse_scaling(runs: list, variations: list[str], *, log: str = "log", n_boot: int = 2000,
                    fit_from: str | None = None, lr_sweep: bool = False) -> dict[str, Any]:
    """Everything a scaling report says, from a study's finished runs (``RunResult``); the laws, slopes and their
    comparisons over the sizes from ``fit_from`` (a model's name) up, the local slopes and windows over all; with
    ``lr_sweep`` (a study that sweeps one objective's learning rate), the optimum per size and the rule through them.
    Not otherwise: where each objective trains at its own rule, the rates differ at a size between objectives, and
    their losses are no sweep of one."""
    table = [{"name": r.name, "variation": r.variation, "model": r.model, "seed": r.seed, "params": r.params,
              "non_embedding_params": r.non_embedding, "tokens": r.tokens, "flops": r.flops, "lr": r.lr,
              "max_steps": r.max_steps, **{m: r.test[m] for m, _ in METRICS}} for r in runs]
    smallest = min((r.params for r in runs if r.model == fit_from), default=0)
    every = {v: [r for r in runs if r.variation == v] for v in variations}
    by = {v: [r for r in rs if r.params >= smallest] for v, rs in every.items()}
    drawn: dict = {}  # the same sizes and seeds drawn for every objective: their runs are paired by seed
    laws = {(v, m): identified_law(_points(rs, m), n_boot=n_boot, seeds_drawn=drawn if m == "nll" else None)
            for v, rs in by.items() for m, _ in METRICS}
    out: dict[str, Any] = {
        "runs": table, "intervals": INTERVALS,
        "fit_window": {"from_model": fit_from, "from_params": smallest or None,
                       "sizes": len({r.params for r in runs if r.params >= smallest})},
        "laws": [{"variation": v, "metric": m, **_public(law)} for (v, m), law in laws.items()],
        "differences": [], "multipliers": [], "shared_alpha": {}, "lr_sweep": learning_rate_sweep(runs) if lr_sweep else None,
        "leave_largest_out": {v: leave_largest_out(_points(rs, "nll")) for v, rs in by.items()},
        "local_slopes": {v: local_slopes(_points(rs, "nll")) for v, rs in every.items()},
        "windows": {v: windows(_points(rs, "nll")) for v, rs in every.items() if len({r.params for r in rs}) >= 4},
        "frontier": {v: _frontier(rs) for v, rs in every.items()}}
    if log in every:  # from the windows above, not fitted again
        out["window_differences"] = {v: window_slope_differences(out["windows"].get(v, []), out["windows"].get(log, []))
                                     for v in every if v != log}
    for m, _ in METRICS:
        groups = {v: _points(rs, m) for v, rs in by.items()}
        if all(why_not_identified(p) is None for p in groups.values()) and len(groups) > 1:
            out["shared_alpha"][m] = shared_exponent_test(groups)
    if log in by:
        _against_log(out, laws, runs, variations, log)
    out["log_linear"], out["log_linear_differences"] = _log_linear(by, log, n_boot)
    out["verdict"] = verdict(out)
    return out


def _frontier(runs: list) -> dict[str, Any]:
    curves = [([c["flops"] for c in r.curve_compute], [c["loss_log"] for c in r.curve_compute]) for r in runs]
    grid, best = envelope(curves)
    return {"compute": grid.tolist(), "nll": best.tolist(), "law": fit_law(grid, best) if grid.size >= 3 else None}


def _against_log(out: dict[str, Any], laws: dict, runs: list, variations: list[str], log: str) -> None:
    """The α differences and compute multipliers against log-loss (paired resamples), where both laws are
    identified."""
    flops = np.array([[r.params, r.flops] for r in runs], dtype=float)
    slope, intercept = np.polyfit(np.log(flops[:, 0]), np.log(flops[:, 1]), 1)  # C(N) at D = k·N: ≈ N²

    def compute_of(n: float) -> float:
        return float(np.exp(intercept + slope * np.log(n)))

    largest = max(r.params for r in runs)
    ref = laws[(log, "nll")]
    for v in variations:
        other = laws[(v, "nll")]
        if v == log or not (ref["identified"] and other["identified"]):
            continue
        low, high = interval(other["samples"][:, 2] - ref["samples"][:, 2])
        out["differences"].append({"variation": v, "reference": log, "alpha": other["alpha"] - ref["alpha"],
                                   "low": low, "high": high})
        samples = [compute_multiplier(_law(o), _law(r), at=largest, compute_of=compute_of)
                   for o, r in zip(other["samples"], ref["samples"], strict=True)]
        low, high = interval(np.array(samples))
        out["multipliers"].append({"variation": v, "reference": log, "at_params": largest, "low": low, "high": high,
                                   "value": compute_multiplier(other, ref, at=largest, compute_of=compute_of)})
    out["compute_of_params"] = {"slope": float(slope), "intercept": float(intercept)}


def _log_linear(by: dict[str, list], log: str, n_boot: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each objective's test-NLL slope in ln N (sizes and seeds drawn once for all) and its difference from
    log-loss's."""
    drawn: dict = {}
    points = {v: _points(rs, "nll") for v, rs in by.items()}
    fits = {v: log_linear(p, n_boot=n_boot, seeds_drawn=drawn) for v, p in points.items() if why_not_identified(p) is None}
    differences = []
    for v, f in fits.items():
        if log in fits and v != log:
            low, high = interval(f["samples"] - fits[log]["samples"])
            differences.append({"variation": v, "reference": log, "b": f["b"] - fits[log]["b"], "low": low, "high": high})
    return {v: _public(f) for v, f in fits.items()}, differences


def verdict(scaling: dict[str, Any]) -> dict[str, Any]:
    """Exponent or offset from the test-NLL laws: ``offset`` where one shared α suffices (ΔAIC ≤ 0) and every α
    difference's interval holds 0, ``exponent`` where separate α's fit better and some interval excludes 0, else
    ``none`` with ``why``: ``unidentified`` (and which), ``fewer than two`` or ``disagree``."""
    unidentified = [law["variation"] for law in scaling["laws"] if law["metric"] == "nll" and not law["identified"]]
    if unidentified:
        return {"kind": "none", "why": "unidentified", "unidentified": unidentified}
    test, differences = scaling["shared_alpha"].get("nll"), scaling["differences"]
    if test is None or not differences:
        return {"kind": "none", "why": "fewer than two"}
    holds_zero = [d["low"] <= 0 <= d["high"] for d in differences]
    if test["delta_aic"] <= 0 and all(holds_zero):
        return {"kind": "offset", "why": ""}
    if test["delta_aic"] > 0 and not all(holds_zero):
        return {"kind": "exponent", "why": ""}
    return {"kind": "none", "why": "disagree"}


def learning_rate_sweep(runs: list, *, reference: float = 20000, n_boot: int = 1000) -> dict[str, Any] | None:
    """Where a study swept the learning rate (≥ 3 rates at a size): per size the mean test NLL at each rate, the best
    rate, whether it lies inside the sweep (not at its edge), and the optimum of a parabola in log lr through the best
    and its neighbours; then the rule lr(N) = value·(N/reference)^−exponent, a least-squares line through log lr*
    against log N over the sizes whose best lies inside, with 95 % intervals of its value and exponent from
    resampling each (size, rate) cell's seeds (where the cells have two or more)."""
    cells: dict[int, dict[float, list[float]]] = {}
    for r in runs:
        cells.setdefault(r.params, {}).setdefault(r.lr, []).append(r.test["nll"])
    rows = [_sweep_row(params, by_lr, next(r.model for r in runs if r.params == params))
            for params, by_lr in sorted(cells.items()) if len(by_lr) >= 3]
    if not rows:
        return None
    rule = _rule([r for r in rows if r["inside"]], reference)
    if rule and min(len(v) for by_lr in cells.values() for v in by_lr.values()) >= 2:
        rng = np.random.default_rng(0)
        draws = []
        for _ in range(n_boot):
            resampled = [_sweep_row(p, {lr: list(rng.choice(v, len(v))) for lr, v in by_lr.items()}, "")
                         for p, by_lr in sorted(cells.items()) if len(by_lr) >= 3]
            drawn = _rule([r for r in resampled if r["inside"]], reference, rounded=False)
            if drawn:
                draws.append((drawn["value"], drawn["exponent"]))
        if draws:
            values, exponents = np.array(draws).T
            rule["value_ci"], rule["exponent_ci"] = list(interval(values)), list(interval(exponents))
            rule["resamples"] = len(draws)
    return {"sizes": rows, "rule": rule}


def _sweep_row(params: int, by_lr: dict[float, list[float]], model: str) -> dict[str, Any]:
    lrs = sorted(by_lr)
    nll = [float(np.mean(by_lr[lr])) for lr in lrs]
    best = int(np.argmin(nll))
    inside = 0 < best < len(lrs) - 1
    optimum = lrs[best]
    if inside:  # the vertex of the parabola through the best and its two neighbours, in log lr
        c2, c1, _ = np.polyfit(np.log(lrs[best - 1:best + 2]), nll[best - 1:best + 2], 2)
        optimum = float(np.exp(-c1 / (2 * c2))) if c2 > 0 else lrs[best]
    return {"params": params, "model": model, "lrs": lrs, "nll": nll, "best": lrs[best], "inside": inside,
            "optimum": optimum, "seeds": min(len(v) for v in by_lr.values())}


def _rule(inside: list[dict[str, Any]], reference: float, *, rounded: bool = True) -> dict[str, Any] | None:
    if len(inside) < 2:
        return None
    slope, intercept = np.polyfit(np.log([r["params"] / reference for r in inside]), np.log([r["optimum"] for r in inside]), 1)
    value, exponent = math.exp(intercept), -slope
    if rounded:
        value, exponent = float(f"{value:.3g}"), float(f"{exponent:.3g}")
    return {"reference": reference, "value": value, "exponent": exponent}


def _law(row: np.ndarray) -> dict[str, float]:
    return {"E": float(row[0]), "A": float(row[1]), "alpha": float(row[2])}
