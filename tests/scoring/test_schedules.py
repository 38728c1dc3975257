"""λ schedules at known points, and the loss registry's settings checks."""

from __future__ import annotations

import math

import pytest

from hypros_lm.scoring import LOSSES, LossSettings, build_objective, make_schedule


def test_sigmoid_known_points():
    lam = make_schedule("sigmoid", t0=300, tau=100)
    assert lam(300) == 0.5
    assert lam(0) == pytest.approx(1 / (1 + math.exp(3)))  # ≈ 0.047: the formula is not shifted
    assert lam(400) == pytest.approx(1 / (1 + math.exp(-1)))
    assert make_schedule("sigmoid", t0=0, tau=1e-3)(10**6) == 1.0  # no overflow far out


def test_noanneal_peak_and_return():
    lam = make_schedule("noanneal", peak=50, total=100, lam_max=0.8)
    assert lam(0) == 0.0 and lam(50) == 0.8 and lam(100) == 0.0
    assert lam(25) == pytest.approx(0.4) and lam(75) == pytest.approx(0.4)


def test_linear_step_constant():
    lin = make_schedule("linear", start=10, end=20, lam0=0.0, lam1=1.0)
    assert (lin(0), lin(15), lin(30)) == (0.0, 0.5, 1.0)
    step = make_schedule("step", switch=50)
    assert (step(49), step(50)) == (0.0, 1.0)
    assert make_schedule("constant", lam=0.25)(123) == 0.25


def test_registry_defaults_follow_the_method():
    T = 1000
    obj = build_objective(LossSettings(name="hypros"), T)
    assert obj.bounded.key == "brier"
    assert obj.schedule(300) == 0.5  # T0 = 0.3·T
    assert obj.schedule(400) == pytest.approx(1 / (1 + math.exp(-1)))  # τ = 0.1·T
    assert build_objective(LossSettings(name="log"), T).schedule(999) == 0.0
    assert build_objective(LossSettings(name="brier"), T).schedule(0) == 1.0
    assert build_objective(LossSettings(name="hypros-fixed"), T).schedule(7) == 0.5
    assert build_objective(LossSettings(name="log-then-brier"), T).schedule(499) == 0.0
    assert build_objective(LossSettings(name="log-then-brier"), T).schedule(500) == 1.0
    assert build_objective(LossSettings(name="hypros-noanneal"), T).schedule(T) == 0.0
    assert build_objective(LossSettings(name="hypros-spherical"), T).bounded.key == "spherical"
    assert set(LOSSES) >= {"log", "brier", "spherical", "hypros", "hypros-fixed", "hypros-linear",
                           "hypros-noanneal", "log-then-brier"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "focal"}, "unknown loss 'focal'"),
        ({"tau": 0.0}, "loss.tau=0.0 must be > 0"),
        ({"tau": -1.0}, "loss.tau=-1.0 must be > 0"),
        ({"t0": 1.5}, "loss.t0=1.5 lies outside the run"),
        ({"switch": -0.1}, "loss.switch=-0.1 lies outside the run"),
    ],
)
def test_bad_loss_settings_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossSettings(**kwargs)


def test_unknown_schedule_lists_known_ones():
    with pytest.raises(ValueError, match="known:"):
        make_schedule("cosine")
