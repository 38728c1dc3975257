"""Statistics across seeds and runs: pure functions over numbers (scipy underneath)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

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
