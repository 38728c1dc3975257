"""The loss API installs and imports with torch alone: the wheel's required dependencies are torch, and
in a fresh venv holding only torch the public API computes a loss with no stack package loaded."""

from __future__ import annotations

import subprocess

import pytest

from tests.install.venvs import build_wheel, clean_env, fresh_venv, pip_install

pytestmark = pytest.mark.slow

CHECK = """
import sys, torch, hypros_lm
from hypros_lm import LambdaSchedule, LinearScoringLoss, linear_scoring_loss
h = torch.randn(12, 8, requires_grad=True); w = torch.randn(40, 8, requires_grad=True); t = torch.randint(0, 40, (12,))
loss = LinearScoringLoss(schedule=LambdaSchedule("hypros", total_steps=10))(h, w, t, step=3)
loss.backward()
heavy = sorted(m for m in ("deepspeed", "transformers", "lm_eval", "wandb", "datasets", "numpy", "yaml") if m in sys.modules)
print("ok", round(loss.item(), 4), heavy)
"""


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_torch_only_venv_imports_the_public_api(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv", provide=["torch"])
    for missing in ("deepspeed", "transformers", "numpy"):
        probe = subprocess.run([str(python), "-c", f"import {missing}"], capture_output=True, text=True, env=clean_env())
        assert probe.returncode != 0, f"{missing} should not be importable in the torch-only venv"
    proc = pip_install(python, str(wheel))  # dependencies resolved against what is there: torch alone
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run([str(python), "-c", CHECK + "print(hypros_lm.__file__)"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300, env=clean_env())
    assert run.returncode == 0, run.stdout + run.stderr
    first, where = run.stdout.strip().splitlines()
    assert first.startswith("ok") and first.endswith("[]"), run.stdout
    assert str(tmp_path / "venv") in where, where  # the installed wheel, not a checkout
