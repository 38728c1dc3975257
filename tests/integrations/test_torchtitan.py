"""HyProS as torchtitan's loss: tests/integrations/torchtitan_check.py run in the torchtitan environment
(scripts/torchtitan_env.sh builds it, or reuses it while its inputs are unchanged), on torchtitan's own Llama-3 debug
model and real WikiText-2 text. Where the environment cannot be built, these tests fail: they never skip.

The decoder runs without gradients (FlexAttention has no backward on CPU); the gradients checked start at the root
norm's input, so that under tensor parallelism they cross torchtitan's own redistribution at the norm.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hypros_lm.errors import MissingPackage
from tests.helpers import REPO

pytestmark = pytest.mark.slow
CHECK = REPO / "tests" / "integrations" / "torchtitan_check.py"
TOLERANCE = 2e-5  # of each quantity's largest magnitude, as the vocab-parallel head's own tests


@pytest.fixture(scope="module")
def torchtitan_python() -> Path:
    subprocess.run(["bash", "scripts/torchtitan_env.sh"], cwd=REPO, check=True)  # a no-op once built
    return REPO / os.environ.get("HYPROS_TORCHTITAN_ENV", ".venv-torchtitan") / "bin" / "python"


@pytest.fixture(scope="module")
def single(torchtitan_python, tmp_path_factory) -> dict:
    return _check(torchtitan_python, "single", tmp_path_factory.mktemp("torchtitan"))


def _check(python: Path, mode: str, tmp_path: Path):
    out = tmp_path / f"{mode}.json"
    proc = subprocess.run([str(python), str(CHECK), mode, str(out)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CHECK_PORT": "29583"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _within(differences: dict[str, float], scale: dict[str, float]) -> dict[str, float]:
    """The quantities whose largest difference exceeds the tolerance (relative to the quantity's magnitude)."""
    return {k: d for k, d in differences.items() if d > TOLERANCE * max(scale[k], 1e-30)}


def test_the_loss_built_by_torchtitan_s_config_system_equals_the_fused_head(single):
    result = single
    assert result["loss_type"] == "ScoringLoss" and result["total_steps"] == 100
    assert result["tau"] == 0.2  # the command line's --loss.objective.tau reached the objective
    assert result["lam"] == pytest.approx(result["expected_lam"], abs=1e-7)  # step 40 of 100 trains λ(39)
    assert 0.05 < result["lam"] < 0.95  # a mixture, not one of its ends
    assert all(d == 0.0 for d in result["differences"].values()), result["differences"]  # the same kernel
    assert not _within(result["from_float64"], result["scale"])  # and the float64 full-logits reference
    assert {"hypros/lambda", "hypros/log", "hypros/brier", "hypros/z_loss"} <= set(result["metrics"])


def test_bad_settings_are_named_before_any_step(single):
    errors = single["errors"]
    assert "loss.total_steps=0" in errors["total_steps"] and "training.steps" in errors["total_steps"]
    assert "step 101 lies outside loss.total_steps=100" in errors["step"]
    assert "loss.tau=0.0 must be > 0" in errors["tau"]


def test_the_head_sharded_by_torchtitan_s_tensor_parallel_plan_equals_the_whole_head(torchtitan_python, tmp_path):
    ranks = _check(torchtitan_python, "tp", tmp_path)
    assert [r["rows"] for r in ranks] == [1024, 1024]  # the 2048-token head split over TP = 2
    for r in ranks:
        assert r["backend"] == "spmd_types" and r["sequence_parallel"]  # torchtitan's defaults
        assert not _within(r["differences"], r["scale"]), (r["rank"], r["differences"])


def test_without_torchtitan_the_import_says_how_to_get_it():
    with pytest.raises(MissingPackage, match="scripts/torchtitan_env.sh"):
        import hypros_lm.integrations.torchtitan  # noqa: F401
