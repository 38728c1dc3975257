"""One set of scoring options: the loss API, the Hugging Face patch and the training stack take the same ones under
the same names, and a run's ``--loss.z_loss`` trains and logs the z-loss term."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from hypros_lm.config import known_keys
from hypros_lm.integrations.transformers import patch_causal_lm
from hypros_lm.scoring import LossSettings, ScoringOptions, fused_linear_score
from hypros_lm.scoring.api import LinearScoringLoss, linear_scoring_loss
from hypros_lm.scoring.head import score_hidden
from tests.helpers import TINY_RUN, read_metrics, run_python

OPTIONS = {f.name for f in dataclasses.fields(ScoringOptions)}


def _keywords(fn) -> set[str]:
    return {name for name, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}


def test_the_api_the_patch_and_the_stack_take_the_same_scoring_options():
    assert OPTIONS == {"label_smoothing", "score_smoothing", "z_loss", "chunk_size"}
    accepted = {
        "linear_scoring_loss": _keywords(linear_scoring_loss),
        "LinearScoringLoss": set(LinearScoringLoss.OPTIONS),
        "patch_causal_lm": _keywords(patch_causal_lm),
        "LossSettings (--loss.*)": {f.name for f in dataclasses.fields(LossSettings)},
        "the command line": {key.removeprefix("loss.") for key in known_keys() if key.startswith("loss.")},
    }
    missing = {where: sorted(OPTIONS - names) for where, names in accepted.items() if not OPTIONS <= names}
    assert not missing, f"scoring options not taken (under these names): {missing}"
    for kernel in (fused_linear_score, score_hidden):  # below the entry points the options travel whole
        assert "options" in _keywords(kernel) and not OPTIONS & _keywords(kernel), kernel.__name__
    assert LossSettings(z_loss=1e-4, label_smoothing=0.1, chunk_size=64).options() == ScoringOptions(
        z_loss=1e-4, label_smoothing=0.1, chunk_size=64)


@pytest.mark.parametrize("bad, message", [
    ({"z_loss": -1.0}, "z_loss=-1.0 must be a finite coefficient"),
    ({"label_smoothing": 1.0}, r"label_smoothing=1.0 must lie in \[0, 1\)"),
    ({"chunk_size": 0}, "chunk_size=0 must be a whole number of tokens"),
])
def test_bad_options_are_named_once_wherever_they_come_from(bad, message):
    with pytest.raises(ValueError, match=message):
        ScoringOptions(**bad)
    with pytest.raises(ValueError, match="loss." + message):
        LossSettings(**bad)


@pytest.mark.slow
def test_a_run_with_z_loss_trains_and_logs_the_term(tmp_path, cache_dir):
    """Step 1 (the same initial weights and batch): the loss with z_loss = c exceeds the loss without by c·E[lse²],
    the logged z-loss term."""
    records = {}
    for c in (0.0, 0.01):
        out = tmp_path / f"z{c}"
        run_python([*TINY_RUN, "--loss", "hypros", "--max-steps", "1", "--loss.z_loss", str(c), "--out", str(out),
                    "--ds-config", "zero0"], cache_dir)
        records[c] = read_metrics(out)[0]
    with_z, without = records[0.01], records[0.0]
    assert "z_loss" not in without
    assert with_z["z_loss"] > 1.0  # lse² of an untrained 2048-token head: about log(2048)² ≈ 58
    assert with_z["loss"] - without["loss"] == pytest.approx(0.01 * with_z["z_loss"], rel=1e-4)
    assert with_z["loss_log"] == pytest.approx(without["loss_log"], rel=1e-6)
