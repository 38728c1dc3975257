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
    leave_largest_out,
    local_slopes,
    log_linear,
    shared_exponent_test,
    window_slope_differences,
    windows,
)
from hypros_lm.studies.scaling_study import learning_rate_sweep, verdict

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
    assert held["alpha"] >= 15 and held["E"] >= 15, held  # nominal 95 %: 19 of 20; resampling 6 sizes, fewer


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
    laws = [{"variation": "log", "metric": "nll", "identified": True},
            {"variation": "hypros", "metric": "nll", "identified": True},
            {"variation": "log", "metric": "brier", "identified": False}]

    def case(delta_aic, *cis):
        return {"laws": laws, "shared_alpha": {"nll": {"delta_aic": delta_aic}},
                "differences": [{"variation": f"v{i}", "low": lo, "high": hi} for i, (lo, hi) in enumerate(cis)]}

    assert verdict(case(-1.5, (-0.1, 0.2), (-0.3, 0.01)))["kind"] == "offset"
    assert verdict(case(4.0, (0.05, 0.2)))["kind"] == "exponent"
    assert verdict(case(4.0, (-0.05, 0.2))) == {"kind": "none", "why": "disagree"}
    assert verdict(case(-1.0, (0.05, 0.2))) == {"kind": "none", "why": "disagree"}
    assert verdict({**case(-1.0), "differences": []}) == {"kind": "none", "why": "fewer than two"}
    unidentified = {**case(-1.0, (-0.1, 0.1)), "laws": [*laws, {"variation": "brier", "metric": "nll", "identified": False}]}
    assert verdict(unidentified) == {"kind": "none", "why": "unidentified", "unidentified": ["brier"]}


def test_the_log_linear_limit_recovers_a_known_slope_and_its_interval():
    """L = c − b·ln N with seed noise: b and c recovered, the true b inside the interval, the interval tight."""
    rng = np.random.default_rng(5)
    x = np.repeat(SIZES, 3)
    y = 6.0 - 0.5 * np.log(x) + rng.normal(0, 0.02, x.size)
    fit = log_linear(Points.of(x, y, np.tile([1, 2, 3], SIZES.size)), n_boot=500)
    assert fit["b"] == pytest.approx(0.5, abs=0.02) and fit["c"] == pytest.approx(6.0, abs=0.2)
    assert fit["b_ci"][0] <= 0.5 <= fit["b_ci"][1] and fit["b_ci"][1] - fit["b_ci"][0] < 0.05
    assert fit["samples"].shape == (500,)


def test_the_local_slopes_of_a_known_law_are_its_secants_and_their_intervals_hold_them():
    """L = E + A·N^−α with seed noise: each local slope is the law's secant −ΔL/Δln N between successive sizes, and
    its t interval holds the true secant in most of 20 draws."""
    rng = np.random.default_rng(11)
    law = lambda n: TRUE["E"] + TRUE["A"] * n ** (-TRUE["alpha"])  # noqa: E731
    secants = [-(law(b) - law(a)) / math.log(b / a) for a, b in zip(SIZES, SIZES[1:], strict=False)]
    exact = local_slopes(_points(rng, noise=0.0))
    assert [r["b"] for r in exact] == pytest.approx(secants, rel=1e-9)
    assert [(r["from"], r["to"]) for r in exact] == list(zip(SIZES[:-1], SIZES[1:], strict=True))
    held = sum(r["low"] <= s <= r["high"] for _ in range(20)
               for r, s in zip(local_slopes(_points(rng, noise=0.01)), secants, strict=True))
    assert held >= 0.85 * 20 * len(secants), held
    one_seed = local_slopes(Points.of(SIZES, law(SIZES), np.ones(SIZES.size)))
    assert all(r["low"] is None for r in one_seed)  # one run a size: no interval


def test_every_window_of_four_sizes_or_more_is_fitted_and_a_line_is_found_in_each():
    """Points on L = 6 − 0.5·ln N: every contiguous window of ≥ 4 of the 6 sizes (3 + 2 + 1 of them) finds b = 0.5;
    against a second objective with slope 0.4, the difference is −0.1 in every window."""
    x = np.repeat(SIZES, 2)
    line = Points.of(x, 6.0 - 0.5 * np.log(x), np.tile([1, 2], SIZES.size))
    other = Points.of(x, 5.0 - 0.4 * np.log(x), np.tile([1, 2], SIZES.size))
    fits = windows(line)
    assert [(w["from"], w["to"]) for w in fits] == [(SIZES[i], SIZES[j]) for i in range(3) for j in range(i + 3, 6)]
    assert all(w["b"] == pytest.approx(0.5) for w in fits) and [w["sizes"] for w in fits] == [4, 5, 6, 4, 5, 4]
    differences = window_slope_differences(windows(other), fits)
    assert len(differences) == 6 and all(d["b"] == pytest.approx(-0.1) for d in differences)
    law = windows(_points(np.random.default_rng(0), noise=0.0))
    assert law[-1]["alpha"] == pytest.approx(TRUE["alpha"], abs=1e-4)  # the window of the four largest sizes


def test_the_slope_interval_carries_misspecification_that_seed_noise_alone_would_not_show():
    """Noise-free points whose slope changes at the middle size (0.8 below, 0.2 above): resampling seeds alone would
    give an interval of zero width; resampling sizes gives one that spans much of the two local slopes."""
    x = np.repeat(SIZES, 3)
    y = np.where(x <= SIZES[2], 6.0 - 0.8 * np.log(x), 6.0 - 0.8 * np.log(SIZES[2]) - 0.2 * np.log(x / SIZES[2]))
    fit = log_linear(Points.of(x, y, np.tile([1, 2, 3], SIZES.size)), n_boot=1000)
    low, high = fit["b_ci"]
    assert high - low > 0.2 and 0.2 - 1e-9 <= low < fit["b"] < high <= 0.8 + 1e-9
    exact = log_linear(Points.of(x, 6.0 - 0.5 * np.log(x), np.tile([1, 2, 3], SIZES.size)), n_boot=200)
    assert exact["b_ci"] == pytest.approx([0.5, 0.5])  # a law that holds: no misspecification to carry


def test_the_learning_rate_rule_has_an_interval_from_the_seeds_that_holds_the_truth():
    """Two seeds a (size, rate) cell with noise: the rule's value and exponent intervals (seeds resampled within
    cells) hold the true 0.01 and 0.3, and are wider with more noise."""
    from types import SimpleNamespace

    rng = np.random.default_rng(2)
    lrs = [2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2]

    def sweep(noise):
        runs = []
        for n in (7e3, 2e4, 6e4):
            optimum = 0.01 * (n / 2e4) ** -0.3
            for lr in lrs:
                for _seed in (1, 2):
                    nll = 3.0 + 0.2 * (np.log(lr) - np.log(optimum)) ** 2 + rng.normal(0, noise)
                    runs.append(SimpleNamespace(params=int(n), model=f"m{int(n)}", lr=lr, test={"nll": nll}))
        return learning_rate_sweep(runs, n_boot=400)["rule"]

    quiet, noisy = sweep(0.002), sweep(0.02)
    assert quiet["value_ci"][0] <= 0.01 <= quiet["value_ci"][1]
    assert quiet["exponent_ci"][0] <= 0.3 <= quiet["exponent_ci"][1]
    width = lambda rule: rule["exponent_ci"][1] - rule["exponent_ci"][0]  # noqa: E731
    assert width(noisy) > width(quiet) and quiet["resamples"] > 300
