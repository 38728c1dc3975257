"""Statistics across seeds and runs: pure functions over numbers (scipy underneath)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

from hypros_lm.errors import InvalidValue


class NotEnoughData(ValueError):
    """Raised when a test needs more paired values than there are; the report says which."""


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise NotEnoughData("no values")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0, int(x.size)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) for the mean of a − b over paired values (e.g. the same seeds)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise InvalidValue(f"paired values differ in number: {a.size} vs {b.size}")
    if a.size < 2:
        raise NotEnoughData(f"a paired t-test needs ≥ 2 pairs; got {a.size}")
    d = a - b
    if np.allclose(d, d[0]):
        return (0.0, 1.0) if d[0] == 0 else (math.copysign(math.inf, d[0]), 0.0)
    res = stats.ttest_rel(a, b)
    return float(res.statistic), float(res.pvalue)


def bootstrap_ci(a: Sequence[float], b: Sequence[float], *, n_boot: int = 10_000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean paired difference a − b."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size < 2:
        raise NotEnoughData(f"a bootstrap interval needs ≥ 2 pairs; got {d.size}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def sign_test(successes: int, trials: int) -> float:
    """One-sided binomial p-value that the success rate exceeds 1/2."""
    if trials < 1:
        raise NotEnoughData("a sign test needs at least one comparison")
    return float(stats.binomtest(successes, trials, 0.5, alternative="greater").pvalue)


def time_to_target(steps: Sequence[float], seconds: Sequence[float], values: Sequence[float],
                   target: float) -> tuple[float, float] | None:
    """(step, seconds) at which a curve first reaches ``target``, interpolated linearly between the last
    evaluation above it and the first at or below it (the first evaluation itself if it is already there);
    None if never reached. Without interpolation every run would read as one of the evaluation steps."""
    previous = None
    for step, sec, value in zip(steps, seconds, values, strict=True):
        if value <= target:
            if previous is None or previous[2] == value:
                return float(step), float(sec)
            frac = (previous[2] - target) / (previous[2] - value)
            return previous[0] + frac * (step - previous[0]), previous[1] + frac * (sec - previous[1])
        previous = (float(step), float(sec), float(value))
    return None


def curve_area(steps: Sequence[float], values: Sequence[float]) -> float:
    """Area under a learning curve, divided by its step range (the curve's mean height)."""
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if x.size < 2:
        raise NotEnoughData("a learning curve needs ≥ 2 points")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def identified_power_law(x: Sequence[float], y: Sequence[float], *, level: float = 0.95) -> dict[str, Any]:
    """The fit of y = E + A·x^(−α) when the points identify it, else why not.

    Identified means: at least one more distinct size than the law's 3 free parameters, the mean of y
    falling with size, a converged fit with α > 0, and each parameter's ``level`` confidence interval
    narrower than the estimate itself. Returns the fit plus ``identified: True``, or
    ``{"identified": False, "reason": ...}`` (numbers from an unidentified fit are not results)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    sizes = np.unique(x)
    if sizes.size < 4:
        return {"identified": False, "reason": f"{sizes.size} distinct size{'s' if sizes.size != 1 else ''}; "
                                               f"a 3-parameter law needs at least 4"}
    means = [float(y[x == size].mean()) for size in sizes]
    if not all(later < earlier for earlier, later in zip(means, means[1:], strict=False)):
        return {"identified": False, "reason": "the mean does not fall with size (" + ", ".join(f"{m:.4g}" for m in means) + ")"}
    try:
        fit = fit_power_law(x, y)
    except RuntimeError as err:
        return {"identified": False, "reason": f"the fit did not converge ({err})"}
    if fit["alpha"] <= 0:
        return {"identified": False, "reason": f"fitted exponent α = {fit['alpha']:.3g} is not positive"}
    z = float(stats.norm.ppf(0.5 + level / 2))
    for name in ("E", "A", "alpha"):
        value, err = fit[name], fit[f"{name}_err"]
        if not math.isfinite(err) or z * err >= abs(value):
            return {"identified": False, "reason": f"the {level:.0%} interval of {name} ({value:.3g} ± {z * err:.2g}) "
                                                   f"is wider than the estimate"}
    return {**fit, "identified": True}


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Fit y = E + A·x^(−α); returns E, A, alpha and their standard errors (nan without spare points)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.unique(x).size < 3:
        raise NotEnoughData(f"a power-law fit needs ≥ 3 distinct sizes; got {np.unique(x).size}")
    scale = x.min()

    def law(n, e, a, alpha):
        return e + a * (n / scale) ** (-alpha)

    p0 = (float(y.min()) * 0.9, float(y.max() - y.min() * 0.9), 0.5)
    params, cov = optimize.curve_fit(law, x, y, p0=p0, maxfev=20_000)
    e, a_scaled, alpha = params
    err = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(3, np.nan)
    factor = scale**alpha  # A·(n/scale)^−α = (A·scale^α)·n^−α
    return {"E": float(e), "A": float(a_scaled * factor), "alpha": float(alpha),
            "E_err": float(err[0]), "A_err": float(err[1] * factor), "alpha_err": float(err[2]),
            "dof": int(x.size - 3)}
