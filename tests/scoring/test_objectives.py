"""One vocabulary of objectives: ``--loss``, study files, LambdaSchedule, the Trainer callback and TRL's trainer take
the same names (the LOSSES registry), under the one parameter name ``loss``, and refuse any other the same way."""

from __future__ import annotations

import inspect

import pytest

from hypros_lm.config import load_settings, settings_from_dict
from hypros_lm.integrations.transformers import HyProSCallback, add_hypros_callback
from hypros_lm.scoring import LOSSES, LossSettings
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
    assert sorted(LOSSES) == ["brier", "hypros", "hypros-fixed", "hypros-linear", "hypros-noanneal",
                              "hypros-spherical", "log", "log-then-brier", "spherical"]
    for name in LOSSES:
        ENTRY_POINTS[where](name)
    with pytest.raises(ValueError, match=r"unknown loss 'hypros-cosine'; choose one of \['brier', 'hypros', "):
        ENTRY_POINTS[where]("hypros-cosine")


def test_the_objective_is_named_loss_wherever_it_is_a_parameter():
    assert next(iter(inspect.signature(LambdaSchedule).parameters)) == "loss"
    assert next(iter(inspect.signature(HyProSCallback).parameters)) == "loss"
    assert list(inspect.signature(add_hypros_callback).parameters)[1] == "loss"
    trl = pytest.importorskip("hypros_lm.integrations.trl")
    assert "loss" in inspect.signature(trl.HyProSSFTTrainer.__init__).parameters
