"""Statistics across seeds and runs: pure functions over numbers (scipy underneath)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


MIN_PAIRS = 3
"""Fewer paired values give no interval and no test: at n = 2 a t interval has one degree of freedom (its 95 %
half-width is 12.7 standard errors) and a percentile bootstrap over the pairs covers about half the time."""


@dataclass(frozen=True)
class PairedDifference:
    """The mean of a − b over n paired values (the same seeds), its t interval at ``level`` and the paired t-test."""

    n: int
    diff: float
    low: float
    high: float
    t: float
    p: float
    level: float = 0.95


def paired_difference(a: Sequence[float], b: Sequence[float], *, level: float = 0.95) -> PairedDifference:
    """The paired mean difference with its t interval (mean ± t_{n−1}·s/√n: its coverage is the nominal one for
    normal differences at any n, and close to it for moderately skewed ones; tests/studies/test_intervals.py
    simulates both) and the two-sided paired t-test. Fewer than [`MIN_PAIRS`][hypros_lm.studies.stats.MIN_PAIRS]
    pairs raise [`NotEnoughData`][hypros_lm.studies.stats.NotEnoughData]."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size < MIN_PAIRS:
        raise NotEnoughData(f"n = {d.size}: no test (a comparison needs ≥ {MIN_PAIRS} paired seeds)")
    mean, half = float(d.mean()), t_half_width(d, level)
    t, p = paired_t_test(a, b)
    return PairedDifference(int(d.size), mean, mean - half, mean + half, t, p, level)


def t_half_width(values: Sequence[float], level: float = 0.95) -> float:
    """Half the two-sided t interval of a mean: t_{n−1, (1+level)/2}·s/√n."""
    x = np.asarray(values, dtype=float)
    return float(stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values of a family of tests, in the order given: the k-th smallest raw p
    times (m − k + 1), made non-decreasing in that order and capped at 1. Rejecting where the adjusted p < α holds
    the family-wise error rate at α; each adjusted p is ≥ its raw one."""
    p = np.asarray(pvalues, dtype=float)
    adjusted, running = np.empty_like(p), 0.0
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (p.size - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


@dataclass(frozen=True)
class NonInferiority:
    """The method against a baseline on a metric, by a margin: ``diff`` is the mean advantage (> 0: the method is
    better, whatever the metric's direction), ``bound`` its one-sided lower confidence bound at ``level``, ``p`` the
    one-sided t-test of "worse by at least the margin"."""

    n: int
    diff: float
    bound: float
    margin: float
    p: float
    verdict: str
    """``no worse`` (the bound lies above −margin), ``worse`` (the upper bound lies below −margin) or
    ``inconclusive`` (the interval straddles −margin: no claim either way)."""
    level: float = 0.95


def non_inferiority(method: Sequence[float], baseline: Sequence[float], *, margin: float, higher_is_better: bool,
                    level: float = 0.95) -> NonInferiority:
    """Whether the method is no worse than the baseline by ``margin`` (in the metric's units), over paired values:
    the one-sided test of H0 "the method is worse by ≥ margin" (Schuirmann's 1987 test, its lower half), decided by
    the one-sided t bound at ``level``. A failure to find a difference is not "no worse": that needs the bound."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise InvalidValue(f"margin={margin!r} must be a finite number ≥ 0 in the metric's units")
    d = np.asarray(method, dtype=float) - np.asarray(baseline, dtype=float)
    d = d if higher_is_better else -d
    if d.size < MIN_PAIRS:
        raise NotEnoughData(f"n = {d.size}: no test (a comparison needs ≥ {MIN_PAIRS} paired seeds)")
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    q = float(stats.t.ppf(level, d.size - 1))
    low, high = mean - q * se, mean + q * se
    if se == 0:
        p = 0.0 if mean > -margin else 1.0
    else:
        p = float(stats.t.sf((mean + margin) / se, d.size - 1))
    verdict = "no worse" if low > -margin else "worse" if high < -margin else "inconclusive"
    return NonInferiority(int(d.size), mean, low, float(margin), p, verdict, level)
