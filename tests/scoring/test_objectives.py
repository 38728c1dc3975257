"""One vocabulary of objectives: ``--loss``, study files, LambdaSchedule, the Trainer callback and TRL's trainer take
the same names (the LOSSES registry), under the one parameter name ``loss``, and refuse any other the same way."""

from __future__ import annotations

import inspect

import pytest

from hypros_lm.config import load_settings, settings_from_dict
from hypros_lm.integrations.transformers import HyProSCallback, add_hypros_callback
from hypros_lm.scoring import LOSSES, LossSettings, build_objective
from hypros_lm.scoring.api import LambdaSchedule

ENTRY_POINTS = {
    "--loss": lambda name: load_settings(["--loss", name]),
    "a study file's variation": lambda name: settings_from_dict({"loss": {"name": name}}),
    "LossSettings": lambda name: LossSettings(name=name),
    "LambdaSchedule": lambda name: LambdaSchedule(name, total_steps=10),
    "HyProSCallback": lambda name: HyProSCallback(name),
}


@pytest.mark.parametrize("where", ENTRY_POINTS)
def test_every_entry_point_takes_the_registered_objectives_and_refuses_others(where):
    assert sorted(LOSSES) == ["bounded", "brier", "hypros", "hypros-fixed", "hypros-linear", "hypros-noanneal",
                              "hypros-spherical", "log", "log-then-brier", "spherical"]
    for name in LOSSES:
        ENTRY_POINTS[where](name)
    with pytest.raises(ValueError, match=r"unknown loss 'hypros-cosine'; choose one of \['bounded', 'brier', "):
        ENTRY_POINTS[where]("hypros-cosine")


def test_the_objective_is_named_loss_wherever_it_is_a_parameter():
    assert next(iter(inspect.signature(LambdaSchedule).parameters)) == "loss"
    assert next(iter(inspect.signature(HyProSCallback).parameters)) == "loss"
    assert list(inspect.signature(add_hypros_callback).parameters)[1] == "loss"
    trl = pytest.importorskip("hypros_lm.integrations.trl")
    assert "loss" in inspect.signature(trl.HyProSSFTTrainer.__init__).parameters


def test_the_bounded_partner_is_any_registered_score_and_a_bad_order_is_named():
    settings = load_settings(["--loss", "hypros", "--loss.bounded", "power", "--loss.alpha", "3"])
    objective = build_objective(settings.loss, 100)
    assert objective.bounded.key == "power-3" and objective.schedule(30) == pytest.approx(0.5)
    alone = build_objective(load_settings(["--loss", "bounded", "--loss.bounded", "pseudo-spherical",
                                           "--loss.alpha", "1.5"]).loss, 10)
    assert alone.bounded.key == "pseudo-spherical-1.5" and alone.schedule(0) == 1.0
    assert build_objective(LossSettings(name="hypros"), 10).bounded.key == "brier"  # the default partner
    with pytest.raises(ValueError, match=r"loss.alpha=1.0: the power score is strictly proper for every finite α > 1"):
        load_settings(["--loss", "hypros", "--loss.bounded", "power", "--loss.alpha", "1"])
    with pytest.raises(ValueError, match=r"bounded='brier' is the power score at α = 2; for α = 3 use bounded='power'"):
        LossSettings(name="hypros", bounded="brier", alpha=3)
    with pytest.raises(ValueError, match=r"bounded='beta' is not a registered score; use one of \['brier', 'power', "
                                         r"'pseudo-spherical', 'spherical'\]"):
        LossSettings(bounded="beta")
