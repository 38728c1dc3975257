"""The scaling-law math: the fit recovers a known law from noisy points (its bootstrap interval holds the true
exponent in most draws), refuses what cannot carry a law with the reason, tests a shared exponent, predicts the
largest size from the smaller ones, and converts an offset into a compute multiplier."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypros_lm.studies.scaling import (
    Points,
    compute_multiplier,
    envelope,
    fit_law,
    identified_law,
    learning_rate_sweep,
    leave_largest_out,
    log_linear,
    shared_exponent_test,
    verdict,
)

SIZES = np.array([7e3, 2e4, 4e4, 1e5, 1.8e5, 3.5e5])
TRUE = {"E": 1.8, "A": 60.0, "alpha": 0.45}


def _points(rng, *, seeds=(1, 2, 3), noise=0.01, law=TRUE, sizes=SIZES) -> Points:
    x = np.repeat(sizes, len(seeds))
    y = law["E"] + law["A"] * x ** (-law["alpha"]) + rng.normal(0, noise, x.size)
    return Points.of(x, y, np.tile(seeds, sizes.size))


def test_the_fit_recovers_a_known_law_exactly_without_noise():
    fit = fit_law(SIZES, TRUE["E"] + TRUE["A"] * SIZES ** (-TRUE["alpha"]))
    assert fit["alpha"] == pytest.approx(TRUE["alpha"], abs=1e-5)
    assert fit["E"] == pytest.approx(TRUE["E"], abs=1e-4) and fit["A"] == pytest.approx(TRUE["A"], rel=1e-3)


def test_the_bootstrap_interval_holds_the_true_values_in_most_of_20_draws():
    rng = np.random.default_rng(7)
    held = {"E": 0, "alpha": 0}
    for draw in range(20):
        law = identified_law(_points(rng), n_boot=1000, seed=draw)
        assert law["identified"], law.get("reason")
        for key in held:
            lo, hi = law[f"{key}_ci"]
            held[key] += lo <= TRUE[key] <= hi
    assert held["alpha"] >= 15 and held["E"] >= 15, held  # nominal 95 %: 19 of 20; clustered by 6 sizes, fewer


@pytest.mark.parametrize(("points", "reason"), [
    (Points.of(np.repeat(SIZES[:4], 2), np.repeat(2 + 9 * SIZES[:4] ** -0.3, 2), np.tile([1, 2], 4)),
     "4 sizes; a law with intervals needs at least 5"),
    (Points.of(SIZES, 2 + 9 * SIZES ** -0.3, np.ones(6)), "a size with 1 seed; the interval needs at least 2 seeds"),
])
def test_fewer_than_5_sizes_or_a_single_seed_are_refused_with_the_reason(points, reason):
    law = identified_law(points, n_boot=200)
    assert law["identified"] is False and law["reason"].startswith(reason)


def test_an_exponent_at_its_bound_is_not_identified():
    rng = np.random.default_rng(0)
    flat = Points.of(np.repeat(SIZES, 2), 3.0 + rng.normal(0, 0.01, 12), np.tile([1, 2], 6))  # no law: α → 0
    law = identified_law(flat, n_boot=200)
    assert not law["identified"] and "lies at its bound" in law["reason"]


def test_a_shared_exponent_is_accepted_when_true_and_rejected_when_not():
    rng = np.random.default_rng(3)
    same = {"a": _points(rng), "b": _points(rng, law={**TRUE, "E": 2.0})}
    assert shared_exponent_test(same)["p"] > 0.01
    different = {"a": _points(rng), "b": _points(rng, law={**TRUE, "alpha": 0.8, "A": 400.0})}
    test = shared_exponent_test(different)
    assert test["p"] < 1e-6 and test["delta_aic"] > 10


def test_leave_the_largest_out_predicts_it_from_the_smaller_sizes():
    rng = np.random.default_rng(4)
    result = leave_largest_out(_points(rng, noise=0.002))
    truth = TRUE["E"] + TRUE["A"] * SIZES[-1] ** (-TRUE["alpha"])
    assert result["size"] == SIZES[-1] and abs(result["predicted"] - truth) < 0.02 and abs(result["relative_error"]) < 0.02


def test_the_compute_multiplier_of_an_offset():
    """Same α, A; E lower by d: the other law reaches the reference's loss at the size where A·N^−α is smaller by d."""
    ref, other = {"E": 1.8, "A": 60.0, "alpha": 0.5}, {"E": 1.9, "A": 60.0, "alpha": 0.5}
    at = 1e5
    size = (60.0 / (60.0 * at ** -0.5 - 0.1)) ** 2  # the size where other's law equals ref's at `at`
    assert compute_multiplier(ref, other, at=at, compute_of=lambda n: 6 * 10 * n * n) == pytest.approx((size / at) ** 2)
    assert compute_multiplier(ref, {"E": 2.5, "A": 60.0, "alpha": 0.5}, at=at, compute_of=lambda n: n) == math.inf


def test_the_envelope_is_the_least_loss_any_curve_reaches_at_each_compute():
    small = ([1e3, 1e4, 1e5], [5.0, 4.0, 3.5])
    large = ([1e4, 1e5, 1e6], [6.0, 3.8, 3.0])
    grid, best = envelope([small, large], points=7)
    assert grid[0] == 1e3 and grid[-1] == pytest.approx(1e6)
    at_1e5 = best[np.argmin(abs(grid - 1e5))]
    assert at_1e5 == pytest.approx(3.5) and best[-1] == pytest.approx(3.0) and best[0] == pytest.approx(5.0)


def test_the_envelope_never_rises_where_a_small_run_ends():
    """A small run ends at 1e4 FLOPs with loss 3.0; a large one passes 1e4 still at 5.4 and reaches 2.9 at 1e5: the
    least loss reachable with 3e4 FLOPs is 3.0, not the large run's 4.4 there."""
    small = ([1e3, 1e4], [5.0, 3.0])
    large = ([1e3, 1e5], [6.0, 2.9])
    grid, best = envelope([small, large], points=11)
    assert np.all(np.diff(best) <= 0)
    assert best[np.argmin(abs(grid - 3e4))] == pytest.approx(3.0) and best[-1] == pytest.approx(2.9)


def test_the_cpu_demo_study_identifies_no_law_and_says_why():
    """The cpu-demo study's own test NLLs (3 sizes × 3 seeds, its committed analysis) carry no law: too few sizes."""
    import json
    from pathlib import Path

    analysis = json.loads((Path(__file__).resolve().parents[2] / "docs/studies/cpu-demo/analysis.json").read_text())
    rows = [r for r in analysis["summary"] if r["variation"] == "hypros"]
    x = [r["params"] for r in rows for _ in range(r["nll"][2])]
    y = [r["nll"][0] for r in rows for _ in range(r["nll"][2])]
    law = identified_law(Points.of(x, y, list(range(len(x)))), n_boot=100)
    assert not law["identified"] and law["reason"] == "3 sizes; a law with intervals needs at least 5"


def test_the_learning_rate_sweep_finds_each_optimum_and_the_rule_through_them():
    """NLL a parabola in log lr with its optimum at 0.01·(N/2e4)^−0.3: the sweep's rule recovers value and exponent;
    a size whose best rate is at the sweep's edge is named and left out of the rule."""
    from types import SimpleNamespace

    lrs = [2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2]
    runs = []
    for n in (7e3, 2e4, 4e4, 9e4):
        optimum = 0.01 * (n / 2e4) ** -0.3
        for lr in lrs:
            runs.append(SimpleNamespace(params=int(n), model=f"m{int(n)}", lr=lr,
                                        test={"nll": 3.0 + 0.2 * (np.log(lr) - np.log(optimum)) ** 2}))
    edge = 1e5
    runs += [SimpleNamespace(params=int(edge), model="edge", lr=lr, test={"nll": 3.0 - lr}) for lr in lrs]
    sweep = learning_rate_sweep(runs)
    inside = [r for r in sweep["sizes"] if r["inside"]]
    assert len(inside) == 4 and [r["model"] for r in sweep["sizes"] if not r["inside"]] == ["edge"]
    for r in inside:
        assert r["optimum"] == pytest.approx(0.01 * (r["params"] / 2e4) ** -0.3, rel=1e-6)
    assert sweep["rule"] == {"reference": 20000, "value": pytest.approx(0.01, rel=1e-2), "exponent": pytest.approx(0.3, rel=1e-2)}


def test_the_verdict_is_offset_or_exponent_only_where_both_tests_agree():
    laws = {"log:nll": {"identified": True}, "hypros:nll": {"identified": True}, "log:brier": {"identified": False}}

    def case(delta_aic, *cis):
        return {"laws": laws, "shared_alpha": {"nll": {"delta_aic": delta_aic}},
                "differences": {f"v{i}-log": {"ci": list(ci)} for i, ci in enumerate(cis)}}

    assert verdict(case(-1.5, (-0.1, 0.2), (-0.3, 0.01))).startswith("offset:")
    assert verdict(case(4.0, (0.05, 0.2))).startswith("exponent:")
    assert verdict(case(4.0, (-0.05, 0.2))).startswith("no verdict: the shared-α test and the α differences")
    assert verdict(case(-1.0, (0.05, 0.2))).startswith("no verdict: the shared-α test and the α differences")
    unidentified = {**case(-1.0, (-0.1, 0.1)), "laws": {**laws, "brier:nll": {"identified": False}}}
    assert verdict(unidentified) == "no verdict: the test-NLL law of brier is not identified"


def test_the_log_linear_limit_recovers_a_known_slope_and_its_interval():
    """L = c − b·ln N with seed noise: b and c recovered, the true b inside the interval, the interval tight."""
    rng = np.random.default_rng(5)
    x = np.repeat(SIZES, 3)
    y = 6.0 - 0.5 * np.log(x) + rng.normal(0, 0.02, x.size)
    fit = log_linear(Points.of(x, y, np.tile([1, 2, 3], SIZES.size)), n_boot=500)
    assert fit["b"] == pytest.approx(0.5, abs=0.02) and fit["c"] == pytest.approx(6.0, abs=0.2)
    assert fit["b_ci"][0] <= 0.5 <= fit["b_ci"][1] and fit["b_ci"][1] - fit["b_ci"][0] < 0.05
    assert fit["samples"].shape == (500,)
