"""Scaling laws L(N) = E + A·N^(−α): fits with intervals, a shared-exponent test, the compute multiplier between two
objectives, a leave-the-largest-out prediction and the compute frontier. Pure functions over numbers.

The fit is variable projection: for a fixed α the law is linear in (E, A), so E and A are solved by least squares
for every α on a fine grid (then refined between the grid's neighbours), and the α of the least residual wins.
Nothing depends on a starting point, and the same closed form, run on resampled weights, gives the bootstrap.
The bootstrap is clustered by size: within each size the runs (seeds) are drawn with replacement, so every
resample keeps every size (a law needs the sizes) and the spread is the seeds'. Where objectives are compared, the
same seeds are drawn for each (their runs are paired by seed).

"Identified" means: at least ``MIN_SIZES`` sizes, at least 2 seeds at each, the fitted α strictly inside its
bounds, and a finite 95 % interval; otherwise the result says which condition failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

ALPHA_BOUNDS = (0.0, 3.0)
ALPHA_GRID = np.linspace(0.005, 3.0, 600)
MIN_SIZES = 5
LEVEL = 0.95


@dataclass(frozen=True)
class Points:
    """One objective's runs of one metric: the size (parameters or FLOPs) and value of each, and its seed."""

    x: np.ndarray
    y: np.ndarray
    seed: np.ndarray

    @classmethod
    def of(cls, x: Sequence[float], y: Sequence[float], seed: Sequence[int] | None = None) -> Points:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return cls(x, y, np.asarray(seed if seed is not None else np.zeros(x.size), dtype=int))

    @property
    def sizes(self) -> np.ndarray:
        return np.unique(self.x)

    def without_largest(self) -> Points:
        keep = self.x < self.sizes[-1]
        return Points(self.x[keep], self.y[keep], self.seed[keep])


def _weighted_ls(u: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of y ≈ E + A·u for every row of ``u`` (…, n) at once: (E, A, residual sum)."""
    sw, su, sy = w.sum(-1), (w * u).sum(-1), (w * y).sum(-1)
    suu, suy = (w * u * u).sum(-1), (w * u * y).sum(-1)
    det = sw * suu - su * su
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (sw * suy - su * sy) / det
        e = (sy - a * su) / sw
    rss = (w * (y - e[..., None] - a[..., None] * u) ** 2).sum(-1)
    return e, a, np.where(np.isfinite(rss), rss, np.inf)


def _profile(x: np.ndarray, y: np.ndarray, w: np.ndarray, alphas: np.ndarray):
    """(E, A, RSS) of each α (alphas: (G,)); w may be (B, n) for B weightings at once: results (B, G)."""
    scale = x.min()
    u = (x / scale)[None, :] ** (-alphas[:, None])  # (G, n)
    if w.ndim == 2:
        u = u[None]
        e, a, rss = _weighted_ls(u, y[None, None, :], w[:, None, :])
    else:
        e, a, rss = _weighted_ls(u, y[None, :], w[None, :])
    return e, a * scale ** alphas, rss  # A·(x/scale)^−α = (A·scale^α)·x^−α


def fit_law(x: Sequence[float], y: Sequence[float], weights: Sequence[float] | None = None) -> dict[str, float]:
    """The least-squares law E + A·x^(−α), α within ALPHA_BOUNDS: E, A, alpha, rss and whether α hit a bound."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    e, a, rss = _profile(x, y, w, ALPHA_GRID)
    best = int(np.argmin(rss))
    lo, hi = ALPHA_GRID[max(best - 1, 0)], ALPHA_GRID[min(best + 1, ALPHA_GRID.size - 1)]
    refined = optimize.minimize_scalar(lambda al: float(_profile(x, y, w, np.array([al]))[2][0]), bounds=(lo, hi),
                                       method="bounded", options={"xatol": 1e-6})
    alpha = float(refined.x) if refined.fun <= rss[best] else float(ALPHA_GRID[best])
    e, a, rss = (float(v[0]) for v in _profile(x, y, w, np.array([alpha])))
    at_bound = best in (0, ALPHA_GRID.size - 1)
    return {"E": e, "A": a, "alpha": alpha, "rss": rss, "at_bound": bool(at_bound)}


def predict(fit: dict[str, float], x: float | np.ndarray) -> float | np.ndarray:
    return fit["E"] + fit["A"] * np.asarray(x, dtype=float) ** (-fit["alpha"])


def resample_weights(points: Points, n_boot: int, rng: np.random.Generator, seeds_drawn: dict | None = None) -> np.ndarray:
    """(n_boot, n) counts of each run in each resample: within each size, its seeds drawn with replacement.
    ``seeds_drawn`` (size → (n_boot, k) drawn seed indices) pairs the draws of several objectives."""
    w = np.zeros((n_boot, points.x.size))
    for size in points.sizes:
        rows = np.flatnonzero(points.x == size)
        order = rows[np.argsort(points.seed[rows])]
        key = (float(size), order.size)
        if seeds_drawn is not None and key in seeds_drawn:
            drawn = seeds_drawn[key]
        else:
            drawn = rng.integers(0, order.size, size=(n_boot, order.size))
            if seeds_drawn is not None:
                seeds_drawn[key] = drawn
        for j in range(order.size):
            w[:, order[j]] = (drawn == j).sum(1)
    return w


def bootstrap(points: Points, n_boot: int = 2000, *, seed: int = 0, seeds_drawn: dict | None = None) -> np.ndarray:
    """(n_boot, 3) of (E, A, α) refitted on resamples clustered by size (grid fit, no refinement: ±0.005 in α)."""
    w = resample_weights(points, n_boot, np.random.default_rng(seed), seeds_drawn)
    out = np.empty((n_boot, 3))
    for start in range(0, n_boot, 100):  # (100, grid, runs) at a time: tens of MB, not GB
        e, a, rss = _profile(points.x, points.y, w[start:start + 100], ALPHA_GRID)
        best, rows = np.argmin(rss, axis=1), np.arange(e.shape[0])
        out[start:start + 100] = np.stack([e[rows, best], a[rows, best], ALPHA_GRID[best]], axis=1)
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def why_not_identified(points: Points, fit: dict[str, float] | None = None, ci: tuple[float, float] | None = None) -> str | None:
    """The first identification condition that fails, in words; None when all hold."""
    sizes = points.sizes
    if sizes.size < MIN_SIZES:
        return f"{sizes.size} sizes; a law with intervals needs at least {MIN_SIZES}"
    seeds = min(int((points.x == s).sum()) for s in sizes)
    if seeds < 2:
        return f"a size with {seeds} seed; the interval needs at least 2 seeds at every size"
    if fit is None:
        return None
    if fit["at_bound"] or not ALPHA_BOUNDS[0] < fit["alpha"] < ALPHA_BOUNDS[1]:
        return f"α = {fit['alpha']:.3g} lies at its bound {ALPHA_BOUNDS}"
    if ci is not None and not all(map(math.isfinite, ci)):
        return "the α interval is not finite"
    return None


def identified_law(points: Points, *, n_boot: int = 2000, seed: int = 0, seeds_drawn: dict | None = None) -> dict[str, Any]:
    """The law of one objective and metric with 95 % bootstrap intervals, or why it is not identified."""
    reason = why_not_identified(points)
    if reason:
        return {"identified": False, "reason": reason}
    fit = fit_law(points.x, points.y)
    samples = bootstrap(points, n_boot, seed=seed, seeds_drawn=seeds_drawn)
    cis = {name: interval(samples[:, i]) for i, name in enumerate(("E", "A", "alpha"))}
    reason = why_not_identified(points, fit, cis["alpha"])
    grid = np.geomspace(points.x.min(), points.x.max(), 40)
    curves = samples[:, :1] + samples[:, 1:2] * grid[None, :] ** (-samples[:, 2:3])  # (B, 40)
    tail = (1 - LEVEL) / 2 * 100
    band = {"x": grid.tolist(), "lo": np.percentile(curves, tail, axis=0).tolist(),
            "hi": np.percentile(curves, 100 - tail, axis=0).tolist()}
    out = {**fit, **{f"{k}_ci": list(v) for k, v in cis.items()}, "n_boot": n_boot, "sizes": int(points.sizes.size),
           "runs": int(points.x.size), "identified": reason is None, "band": band, "samples": samples}
    if reason:
        out["reason"] = reason
    return out


def shared_exponent_test(groups: dict[str, Points]) -> dict[str, float]:
    """Is one α shared by every objective (each its own E and A) as good as separate α's? The likelihood-ratio
    statistic under Gaussian errors, n·ln(RSS_shared / RSS_separate) ~ χ²(k − 1), and ΔAIC (shared − separate:
    negative favours a shared α)."""
    n = sum(p.x.size for p in groups.values())
    separate = sum(fit_law(p.x, p.y)["rss"] for p in groups.values())
    total = np.zeros(ALPHA_GRID.size)
    for p in groups.values():
        total = total + _profile(p.x, p.y, np.ones_like(p.y), ALPHA_GRID)[2]
    best = int(np.argmin(total))
    refined = optimize.minimize_scalar(
        lambda al: sum(float(_profile(p.x, p.y, np.ones_like(p.y), np.array([al]))[2][0]) for p in groups.values()),
        bounds=(ALPHA_GRID[max(best - 1, 0)], ALPHA_GRID[min(best + 1, ALPHA_GRID.size - 1)]), method="bounded")
    shared = min(float(refined.fun), float(total[best]))
    k = len(groups)
    lr = n * math.log(shared / separate) if separate > 0 else math.inf
    params_separate, params_shared = 3 * k, 2 * k + 1
    aic_separate = n * math.log(separate / n) + 2 * params_separate
    aic_shared = n * math.log(shared / n) + 2 * params_shared
    return {"alpha_shared": float(refined.x) if refined.fun <= total[best] else float(ALPHA_GRID[best]),
            "lr_statistic": lr, "df": k - 1, "p": float(stats.chi2.sf(lr, k - 1)), "delta_aic": aic_shared - aic_separate}


def compute_multiplier(reference: dict, other: dict, *, at: float, compute_of) -> float:
    """How many times the compute ``other`` needs to reach the loss ``reference``'s law predicts at size ``at``
    (``compute_of``: size → training FLOPs); > 1 means ``reference`` is ahead, inf where ``other``'s law never
    gets there (its E is above that loss)."""
    target = float(predict(reference, at))
    if target <= other["E"] or other["A"] <= 0:
        return math.inf
    size = (other["A"] / (target - other["E"])) ** (1 / other["alpha"])
    return float(compute_of(size) / compute_of(at))


def log_linear(points: Points, *, n_boot: int = 2000, seed: int = 1, seeds_drawn: dict | None = None) -> dict[str, Any]:
    """L = c − b·ln N with 95 % bootstrap intervals (resampled as the laws are): the limit of E + A·N^−α as α → 0
    (c = E + A, b = A·α), all that sizes whose loss shows no floor can measure; b is the loss removed per e-fold of
    parameters. ``samples`` holds the resamples' b."""
    u = np.log(points.x)
    c, a, _ = _weighted_ls(u, points.y, np.ones_like(u))
    cs, slopes, _ = _weighted_ls(u, points.y, resample_weights(points, n_boot, np.random.default_rng(seed), seeds_drawn))
    return {"c": float(c), "b": float(-a), "c_ci": list(interval(cs)), "b_ci": list(interval(-slopes)), "samples": -slopes}


def leave_largest_out(points: Points) -> dict[str, float] | None:
    """The law fitted without the largest size, its prediction there and the error against the observed mean."""
    smaller = points.without_largest()
    if smaller.sizes.size < 3:
        return None
    fit = fit_law(smaller.x, smaller.y)
    largest = points.sizes[-1]
    observed = float(points.y[points.x == largest].mean())
    predicted = float(predict(fit, largest))
    return {"size": float(largest), "predicted": predicted, "observed": observed, "error": predicted - observed,
            "relative_error": (predicted - observed) / observed, "alpha_without": fit["alpha"]}


def envelope(curves: Sequence[tuple[Sequence[float], Sequence[float]]], points: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """The lower envelope of learning curves (compute, loss) on a log grid of compute (Kaplan's L(C_min)): at each
    grid point the least loss any curve reaches at that compute or less (each curve interpolated in log compute,
    within its span). It never rises: a loss reached with less compute is reachable with more, so where a small run
    ends, its last loss carries on (counting each curve only inside its own span made the frontier jump up there).
    Caveat: a point of a curve before its run's end is a checkpoint mid-schedule, not a run trained to that compute."""
    lo = min(min(c) for c, _ in curves)
    hi = max(max(c) for c, _ in curves)
    grid = np.geomspace(lo, hi, points)
    best = np.full(points, np.inf)
    for c, loss in curves:
        c, loss = np.asarray(c, dtype=float), np.asarray(loss, dtype=float)
        inside = (grid >= c.min()) & (grid <= c.max())
        best[inside] = np.minimum(best[inside], np.interp(np.log(grid[inside]), np.log(c), loss))
    keep = np.isfinite(best)
    return grid[keep], np.minimum.accumulate(best[keep])


METRICS = (("nll", "test NLL"), ("brier", "test Brier"), ("ece_10", "test ECE (10 bins)"))


def _points(runs: list, metric: str) -> Points:
    return Points.of([r.params for r in runs], [r.test[metric] for r in runs], [r.seed for r in runs])


def _public(law: dict[str, Any]) -> dict[str, Any]:
    """A fit without its bootstrap samples (what analysis.json keeps)."""
    return {k: v for k, v in law.items() if k != "samples"}


def analyse_scaling(runs: list, variations: list[str], *, log: str = "log", n_boot: int = 2000) -> dict[str, Any]:
    """Everything a scaling report says, from a study's finished runs (``RunResult``): each run's size, tokens,
    FLOPs, learning rate and test metrics; per variation and metric the law in parameters with intervals; the
    shared-exponent test; α differences against log-loss with intervals; the compute multiplier at the largest
    size; the leave-the-largest-out prediction; the compute frontier of the validation NLL and its law."""
    table = [{"name": r.name, "variation": r.variation, "model": r.model, "seed": r.seed, "params": r.params,
              "non_embedding_params": r.non_embedding, "tokens": r.tokens, "flops": r.flops, "lr": r.lr,
              "max_steps": r.max_steps, **{m: r.test[m] for m, _ in METRICS}} for r in runs]
    by = {v: [r for r in runs if r.variation == v] for v in variations}
    drawn: dict = {}  # the same seeds drawn for every variation: their runs are paired by seed
    laws = {f"{v}:{m}": identified_law(_points(rs, m), n_boot=n_boot, seeds_drawn=drawn if m == "nll" else None)
            for v, rs in by.items() for m, _ in METRICS}
    out: dict[str, Any] = {"runs": table, "laws": {k: _public(v) for k, v in laws.items()}, "differences": {},
                           "multipliers": {}, "leave_largest_out": {}, "shared_alpha": {}, "frontier": {},
                           "lr_sweep": learning_rate_sweep(runs)}
    for m, _ in METRICS:
        groups = {v: _points(rs, m) for v, rs in by.items()}
        if all(why_not_identified(p) is None for p in groups.values()) and len(groups) > 1:
            out["shared_alpha"][m] = shared_exponent_test(groups)
    for v, rs in by.items():
        out["leave_largest_out"][v] = leave_largest_out(_points(rs, "nll"))
        curves = [([c["flops"] for c in r.curve_compute], [c["loss_log"] for c in r.curve_compute]) for r in rs]
        grid, best = envelope(curves)
        fit = fit_law(grid, best) if grid.size >= 3 else None
        out["frontier"][v] = {"compute": grid.tolist(), "nll": best.tolist(), "law": fit}
    if log in by:
        flops = np.array([[r.params, r.flops] for r in runs], dtype=float)
        slope, intercept = np.polyfit(np.log(flops[:, 0]), np.log(flops[:, 1]), 1)  # C(N) at D = k·N: ≈ N²

        def compute_of(n: float) -> float:
            return float(np.exp(intercept + slope * np.log(n)))

        largest = max(r.params for r in runs)
        ref = laws[f"{log}:nll"]
        for v in variations:
            other = laws[f"{v}:nll"]
            if v == log or not (ref["identified"] and other["identified"]):
                continue
            d = other["samples"][:, 2] - ref["samples"][:, 2]
            out["differences"][f"{v}-{log}"] = {"alpha": other["alpha"] - ref["alpha"], "ci": list(interval(d))}
            samples = [compute_multiplier(_law(o), _law(r), at=largest, compute_of=compute_of)
                       for o, r in zip(other["samples"], ref["samples"], strict=True)]
            out["multipliers"][f"{log} to match {v}"] = {
                "at_params": largest, "value": compute_multiplier(other, ref, at=largest, compute_of=compute_of),
                "ci": list(interval(np.array(samples)))}
        out["compute_of_params"] = {"slope": float(slope), "intercept": float(intercept)}
    out["log_linear"], out["log_linear_differences"] = _log_linear(by, log, n_boot)
    out["verdict"] = verdict(out)
    return out


def _log_linear(by: dict[str, list], log: str, n_boot: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each objective's test-NLL slope in ln N (the seeds drawn once for all) and its difference from log-loss's."""
    drawn: dict = {}
    points = {v: _points(rs, "nll") for v, rs in by.items()}
    fits = {v: log_linear(p, n_boot=n_boot, seeds_drawn=drawn) for v, p in points.items() if why_not_identified(p) is None}
    differences = {f"{v}-{log}": {"b": f["b"] - fits[log]["b"], "ci": list(interval(f["samples"] - fits[log]["samples"]))}
                   for v, f in fits.items() if log in fits and v != log}
    return {v: _public(f) for v, f in fits.items()}, differences


def verdict(scaling: dict[str, Any]) -> str:
    """Exponent or offset, in words, from the test-NLL laws: ``offset`` where one shared α suffices (ΔAIC ≤ 0) and
    every α difference's interval holds 0, ``exponent`` where separate α's fit better and some interval excludes 0,
    else why no verdict is given."""
    laws = {k: v for k, v in scaling["laws"].items() if k.endswith(":nll")}
    unidentified = [k.split(":")[0] for k, v in laws.items() if not v["identified"]]
    if unidentified:
        return f"no verdict: the test-NLL law of {', '.join(unidentified)} is not identified"
    test, differences = scaling["shared_alpha"].get("nll"), scaling["differences"].values()
    if test is None or not differences:
        return "no verdict: fewer than two objectives with identified laws"
    holds_zero = [d["ci"][0] <= 0 <= d["ci"][1] for d in differences]
    if test["delta_aic"] <= 0 and all(holds_zero):
        return "offset: one shared α fits the objectives (ΔAIC ≤ 0) and every α difference's interval holds 0"
    if test["delta_aic"] > 0 and not all(holds_zero):
        return "exponent: separate α's fit better (ΔAIC > 0) and an α difference's interval excludes 0"
    return "no verdict: the shared-α test and the α differences' intervals disagree"


def learning_rate_sweep(runs: list, *, reference: float = 20000) -> dict[str, Any] | None:
    """Where a study swept the learning rate (≥ 3 rates at a size): per size the mean test NLL at each rate, the best
    rate, whether it lies inside the sweep (not at its edge), and the optimum of a parabola in log lr through the best
    and its neighbours; then the rule lr(N) = value·(N/reference)^−exponent, a least-squares line through log lr*
    against log N over the sizes whose best lies inside."""
    sizes: dict[int, dict[float, list[float]]] = {}
    for r in runs:
        sizes.setdefault(r.params, {}).setdefault(r.lr, []).append(r.test["nll"])
    rows = []
    for params, by_lr in sorted(sizes.items()):
        if len(by_lr) < 3:
            continue
        lrs = sorted(by_lr)
        nll = [float(np.mean(by_lr[lr])) for lr in lrs]
        best = int(np.argmin(nll))
        inside = 0 < best < len(lrs) - 1
        optimum = lrs[best]
        if inside:  # the vertex of the parabola through the best and its two neighbours, in log lr
            x = np.log(lrs[best - 1:best + 2])
            c2, c1, _ = np.polyfit(x, nll[best - 1:best + 2], 2)
            optimum = float(np.exp(-c1 / (2 * c2))) if c2 > 0 else lrs[best]
        rows.append({"params": params, "model": next(r.model for r in runs if r.params == params), "lrs": lrs,
                     "nll": nll, "best": lrs[best], "inside": inside, "optimum": optimum})
    if not rows:
        return None
    fitted = [r for r in rows if r["inside"]]
    rule = None
    if len(fitted) >= 2:
        slope, intercept = np.polyfit(np.log([r["params"] / reference for r in fitted]), np.log([r["optimum"] for r in fitted]), 1)
        rule = {"reference": reference, "value": float(f"{math.exp(intercept):.3g}"), "exponent": float(f"{-slope:.3g}")}
    return {"sizes": rows, "rule": rule}


def _law(row: np.ndarray) -> dict[str, float]:
    return {"E": float(row[0]), "A": float(row[1]), "alpha": float(row[2])}
