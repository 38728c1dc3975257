"""Study statistics against scipy and hand computations on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hypros_lm.studies.stats import (
    NotEnoughData,
    curve_area,
    mean_std,
    paired_t_test,
    sign_test,
    time_to_target,
)


def test_paired_t_matches_the_formula_and_scipy():
    a, b = [5.1, 4.9, 5.3, 5.0], [5.4, 5.2, 5.3, 5.5]
    d = np.subtract(a, b)
    t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    t, p = paired_t_test(a, b)
    assert t == pytest.approx(t_hand)
    assert p == pytest.approx(2 * stats.t.sf(abs(t_hand), d.size - 1))
    with pytest.raises(NotEnoughData, match="≥ 2 pairs"):
        paired_t_test([1.0], [2.0])


def test_mean_std_and_sign_test():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert sign_test(9, 10) == pytest.approx(11 / 1024)  # P(X ≥ 9), X ~ Bin(10, 1/2)
    assert sign_test(5, 10) == pytest.approx(stats.binomtest(5, 10, 0.5, alternative="greater").pvalue)


def test_time_to_target_and_area():
    steps, secs, vals = [10, 20, 30], [1.0, 2.0, 3.0], [6.0, 5.0, 4.0]
    assert time_to_target(steps, secs, vals, 5.0) == (20.0, 2.0)
    assert time_to_target(steps, secs, vals, 3.0) is None
    assert time_to_target(steps, secs, vals, 7.0) == (10.0, 1.0)  # already there at the first evaluation
    assert curve_area(steps, vals) == pytest.approx(5.0)


def test_time_to_target_is_interpolated_between_evaluations():
    """A known curve, L(t) = 8 − t/10, evaluated every 25 steps: it crosses 5.3 at t = 27 exactly."""
    steps = [25, 50, 75, 100]
    vals = [8 - t / 10 for t in steps]
    secs = [2.0 * t for t in steps]
    step, sec = time_to_target(steps, secs, vals, 5.3)
    assert step == pytest.approx(27.0) and sec == pytest.approx(54.0)
