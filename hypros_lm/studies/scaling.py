"""Scaling laws L(N) = E + A·N^(−α): fits with intervals, a shared-exponent test, the compute multiplier between two
objectives, a leave-the-largest-out prediction and the compute frontier. Pure functions over numbers.

The fit is variable projection: for a fixed α the law is linear in (E, A), so E and A are solved by least squares
for every α on a fine grid (then refined between the grid's neighbours), and the α of the least residual wins.
Nothing depends on a starting point, and the same closed form, run on resampled weights, gives the bootstrap.
The bootstrap resamples at two levels: the sizes with replacement, then within each drawn size its runs (seeds) with
replacement. Resampling seeds alone measures the seeds' noise only; where the law does not hold exactly at these sizes
(local slopes that change from size to size), resampling the sizes carries that misspecification into the interval.
Resamples with too few distinct sizes to fit (under 3 for a law, under 2 for a line) are left out. Where objectives
are compared, the same sizes and seeds are drawn for each (their runs are paired by seed).

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
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample with one distinct size: NaN, left out
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


def resample_weights(points: Points, n_boot: int, rng: np.random.Generator, drawn: dict | None = None) -> np.ndarray:
    """(n_boot, n) counts of each run in each resample: the sizes drawn with replacement, then for each copy of a
    size its seeds drawn with replacement. ``drawn`` (filled on first use) shares the draws between objectives with
    the same sizes and seeds per size, so that their resamples are paired."""
    sizes = points.sizes
    key = ("sizes", tuple(sizes.tolist()))
    if drawn is not None and key in drawn:
        copies = drawn[key]
    else:
        copies = np.stack([np.bincount(row, minlength=sizes.size) for row in
                           rng.integers(0, sizes.size, size=(n_boot, sizes.size))])  # (n_boot, sizes)
        if drawn is not None:
            drawn[key] = copies
    w = np.zeros((n_boot, points.x.size))
    for i, size in enumerate(sizes):
        rows = np.flatnonzero(points.x == size)
        order = rows[np.argsort(points.seed[rows])]
        seed_key = (float(size), order.size)
        if drawn is not None and seed_key in drawn:
            seeds = drawn[seed_key]
        else:
            seeds = rng.integers(0, order.size, size=(n_boot, sizes.size, order.size))  # a draw per possible copy
            if drawn is not None:
                drawn[seed_key] = seeds
        used = np.arange(sizes.size)[None, :, None] < copies[:, i, None, None]  # (n_boot, copies, 1)
        for j in range(order.size):
            w[:, order[j]] = ((seeds == j) & used).sum((1, 2))
    return w


def distinct_sizes(points: Points, w: np.ndarray) -> np.ndarray:
    """(n_boot,) how many distinct sizes each resample holds."""
    return np.stack([(w[:, points.x == s].sum(1) > 0) for s in points.sizes], axis=1).sum(1)


def bootstrap(points: Points, n_boot: int = 2000, *, seed: int = 0, seeds_drawn: dict | None = None) -> np.ndarray:
    """(n_boot, 3) of (E, A, α) refitted on resamples of sizes and seeds (grid fit, no refinement: ±0.005 in α);
    NaN rows where a resample holds fewer than 3 distinct sizes."""
    w = resample_weights(points, n_boot, np.random.default_rng(seed), seeds_drawn)
    out = np.empty((n_boot, 3))
    for start in range(0, n_boot, 100):  # (100, grid, runs) at a time: tens of MB, not GB
        e, a, rss = _profile(points.x, points.y, w[start:start + 100], ALPHA_GRID)
        best, rows = np.argmin(rss, axis=1), np.arange(e.shape[0])
        out[start:start + 100] = np.stack([e[rows, best], a[rows, best], ALPHA_GRID[best]], axis=1)
    out[distinct_sizes(points, w) < 3] = np.nan
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap samples, NaN (left-out) resamples excluded."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
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
    band = {"x": grid.tolist(), "lo": np.nanpercentile(curves, tail, axis=0).tolist(),
            "hi": np.nanpercentile(curves, 100 - tail, axis=0).tolist()}
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
    w = resample_weights(points, n_boot, np.random.default_rng(seed), seeds_drawn)
    cs, slopes, _ = _weighted_ls(u, points.y, w)
    too_few = distinct_sizes(points, w) < 2
    cs[too_few], slopes[too_few] = np.nan, np.nan
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


def local_slopes(points: Points, level: float = LEVEL) -> list[dict[str, float | None]]:
    """Between each pair of successive sizes, the loss removed per e-fold of parameters,
    b = −(ȳ₂ − ȳ₁)/(ln N₂ − ln N₁), with its t interval from the seeds at the two sizes (Welch's degrees of freedom;
    none where a size has one run). A law that holds has slopes that change smoothly with size; slopes that jump
    show where a line or a power law in N is misspecified."""
    out = []
    sizes = points.sizes
    for lo, hi in zip(sizes, sizes[1:], strict=False):
        y1, y2 = points.y[points.x == lo], points.y[points.x == hi]
        step = math.log(hi / lo)
        row: dict[str, float | None] = {"from": float(lo), "to": float(hi), "b": -(y2.mean() - y1.mean()) / step,
                                        "low": None, "high": None}
        if y1.size > 1 and y2.size > 1:
            v1, v2 = y1.var(ddof=1) / y1.size, y2.var(ddof=1) / y2.size
            se = math.sqrt(v1 + v2)
            df = (v1 + v2) ** 2 / (v1 ** 2 / (y1.size - 1) + v2 ** 2 / (y2.size - 1)) if se > 0 else 1.0
            half = float(stats.t.ppf((1 + level) / 2, df)) * se / step
            row["low"], row["high"] = row["b"] - half, row["b"] + half
        out.append(row)
    return out


def windows(points: Points, *, smallest: int = 4) -> list[dict[str, Any]]:
    """The fits on every contiguous window of at least ``smallest`` sizes (window sensitivity): the line's slope b
    in ln N and the law's α (``at_bound`` where it hit a bound, so no exponent is read from it)."""
    sizes = points.sizes
    out = []
    for first in range(sizes.size):
        for last in range(first + smallest - 1, sizes.size):
            keep = (points.x >= sizes[first]) & (points.x <= sizes[last])
            x, y = points.x[keep], points.y[keep]
            _, a, _ = _weighted_ls(np.log(x), y, np.ones_like(y))
            law = fit_law(x, y)
            out.append({"from": float(sizes[first]), "to": float(sizes[last]), "sizes": last - first + 1,
                        "b": float(-a), "alpha": law["alpha"], "at_bound": law["at_bound"]})
    return out


def window_slope_differences(mine: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[dict[str, float]]:
    """From two objectives' [`windows()`][hypros_lm.studies.scaling.windows]: for every window both share, the
    difference of their slopes b (this objective's minus the reference's), how the comparison moves with the
    window."""
    theirs = {(w["from"], w["to"]): w["b"] for w in reference}
    return [{"from": w["from"], "to": w["to"], "b": w["b"] - theirs[(w["from"], w["to"])]} for w in mine
            if (w["from"], w["to"]) in theirs]
