"""Study statistics against scipy and hand computations on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hypros_lm.studies.stats import (
    NotEnoughData,
    bootstrap_ci,
    curve_area,
    fit_power_law,
    identified_power_law,
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


def test_bootstrap_ci_brackets_the_mean_difference():
    rng = np.random.default_rng(3)
    a = rng.normal(1.0, 0.1, 50)
    b = a - 0.3 + rng.normal(0, 0.01, 50)
    lo, hi = bootstrap_ci(a, b)
    assert lo < 0.3 < hi and hi - lo < 0.02


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


def test_power_law_fit_recovers_known_parameters():
    n = np.array([1e6, 3e6, 1e7, 3e7, 1e8])
    y = 1.7 + 400.0 * n ** (-0.35)
    fit = fit_power_law(n, y)
    assert fit["E"] == pytest.approx(1.7, rel=1e-4)
    assert fit["A"] == pytest.approx(400.0, rel=1e-3)
    assert fit["alpha"] == pytest.approx(0.35, rel=1e-4)
    with pytest.raises(NotEnoughData, match="≥ 3 distinct sizes"):
        fit_power_law([1e6, 1e6, 2e6], [3.0, 3.1, 2.9])


def test_power_law_identified_only_when_the_points_allow():
    n = np.array([1e6, 3e6, 1e7, 3e7, 1e8])
    fit = identified_power_law(n, 1.7 + 400.0 * n ** (-0.35))
    assert fit["identified"] and fit["alpha"] == pytest.approx(0.35, rel=1e-4) and fit["E"] == pytest.approx(1.7, rel=1e-4)
    rng = np.random.default_rng(0)  # noisy repeats at each of 5 sizes, still identified
    x = np.repeat(n, 3)
    noisy = identified_power_law(x, 1.7 + 400.0 * x ** (-0.35) + rng.normal(0, 0.002, x.size))
    assert noisy["identified"] and noisy["alpha"] == pytest.approx(0.35, rel=0.1)
    assert "3 distinct sizes" in identified_power_law(n[:3], (1.7 + 400.0 * n ** (-0.35))[:3])["reason"]
    rising = identified_power_law(n, 1.7 + 0.01 * np.log(n))
    assert not rising["identified"] and "does not fall with size" in rising["reason"]


def test_the_cpu_demo_scaling_fits_are_not_identified():
    """The cpu-demo study's own test NLLs (3 sizes × 3 seeds, from its committed analysis) identify no power law."""
    import json
    from pathlib import Path

    analysis = json.loads((Path(__file__).resolve().parents[2] / "docs/studies/cpu-demo/analysis.json").read_text())
    for variation in ("log", "brier", "hypros"):
        rows = [r for r in analysis["summary"] if r["variation"] == variation]
        x = [r["params"] for r in rows for _ in range(r["nll"][2])]
        y = [r["nll"][0] for r in rows for _ in range(r["nll"][2])]  # each size's mean, once per seed
        fit = identified_power_law(x, y)
        assert not fit["identified"] and "3 distinct sizes" in fit["reason"]
