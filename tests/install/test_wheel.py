"""The built wheel is complete: installed with its dependencies into a fresh venv (taken from this
environment: no network), it trains, evaluates and runs a study from a folder outside the checkout, finding
its DeepSpeed configs and launching its own modules."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from hypros_lm.runs import EVALUATION_FILE, RunFolder
from tests import helpers
from tests.install.venvs import build_wheel, fresh_venv, pip_install, requirements_of_project

pytestmark = pytest.mark.slow


def test_installed_wheel_trains_evaluates_and_runs_a_study(tmp_path, cache_dir):
    wheel = build_wheel(tmp_path / "wheel")
    python = fresh_venv(tmp_path / "venv", provide=["torch", *requirements_of_project(("train",))])
    proc = pip_install(python, f"{wheel}[train]")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bin_dir = python.parent
    work = tmp_path / "elsewhere"  # no checkout here: configs, launchers and data come from the package
    work.mkdir()
    env = {**helpers.test_env(cache_dir), "HYPROS_DATA_DIR": str(helpers.REPO.parent / "shared" / "data"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)

    def run(*cmd: str, timeout: int = 600) -> str:
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    where = run(str(python), "-c", "import hypros_lm, sys; print(hypros_lm.__file__)")
    assert str(tmp_path / "venv") in where and str(helpers.REPO) not in where
    run(str(bin_dir / "hypros-pretrain"), "--model", "nano", "--max-steps", "3", "--seq-len", "64",
        "--micro-batch-size", "4", "--data.vocab_size", "2048", "--out", "run")
    assert RunFolder(work / "run").latest() is not None
    out = run(str(bin_dir / "hypros-eval"), "lm", "run", "--batches", "2")
    assert "ppl" in out and (RunFolder(work / "run").evaluation("validation") / EVALUATION_FILE).is_file()

    study = {"name": "wheel-mini", "description": "Two runs from an installed wheel.", "task": "pretrain",
             "ranks": 1, "base": {"data": {"name": "wikitext-2-v1", "seq_len": 64, "vocab_size": 2048},
                                  "train": {"max_steps": 3, "micro_batch_size": 4, "ds_config": "zero2",
                                            "eval_every": 3, "eval_batches": 2, "save_every": 3}},
             "variations": {"log": {"loss": {"name": "log"}}, "hypros": {"loss": {"name": "hypros"}}},
             "baselines": {"method": "hypros", "log": "log", "bounded": "log"},
             "models": ["nano"], "seeds": [1], "evaluations": {"test": {"data": "wikitext-2-v1", "split": "test"}},
             "eval_batches": 2, "criteria": {"pilot": True}}  # one seed: the install's test, not a comparison
    (work / "mini.yaml").write_text(yaml.safe_dump(study))
    run(str(bin_dir / "hypros-study"), "mini.yaml", "--out", "study")
    for name in ("log-nano-s1", "hypros-nano-s1"):
        assert helpers.evaluation_metrics(RunFolder(work / "study" / name).evaluation("test"))["perplexity"] > 1
    assert Path(work / "study").is_dir()
