"""The examples run as a user runs them (a fresh process, real WikiText-2), and the patched model under
DeepSpeed ZeRO-3 on 2 CPU ranks through `Trainer --deepspeed` gives ZeRO-0's losses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import helpers
from tests.helpers import REPO, run_deepspeed

EXAMPLES = REPO / "examples"


def _run(script: str, *args: str, cache_dir) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=REPO, env=helpers.test_env(cache_dir),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_plain_loop_example_learns(cache_dir):
    out = _run("plain_loop.py", "--steps", "60", cache_dir=cache_dir)
    lines = [line for line in out.splitlines() if line.startswith("step")]
    first, last = (float(line.split("val log ")[1].split()[0]) for line in (lines[0], lines[-1]))
    assert last < first - 0.5, out  # the byte-level model learns real text
    assert float(lines[-1].split("λ ")[1].split()[0]) > 0.99 > 0.1 > float(lines[0].split("λ ")[1].split()[0])


def test_hf_trainer_example_runs(cache_dir, tmp_path):
    out = _run("hf_trainer.py", "--steps", "8", "--out", str(tmp_path), cache_dir=cache_dir)
    history = json.loads((tmp_path / "log_history.json").read_text())
    train = [r for r in history if "loss" in r]
    assert len(train) == 8 and train[-1]["hypros/lambda"] > 0.9 > train[0]["hypros/lambda"]
    assert "done: step 8" in out


@pytest.mark.parametrize("lora", [False, True])
def test_trl_sft_example_runs(cache_dir, tmp_path, lora):
    out = _run("trl_sft.py", "--steps", "8", "--pairs", "400", "--out", str(tmp_path), *(["--lora"] if lora else []),
               cache_dir=cache_dir)
    train = [r for r in json.loads((tmp_path / "log_history.json").read_text()) if "loss" in r]
    assert train[-1]["hypros/lambda"] > 0.9 > train[0]["hypros/lambda"]
    assert {"entropy", "mean_token_accuracy", "hypros/brier"} <= set(train[-1])
    assert "done: step 8" in out


@pytest.mark.slow
def test_trainer_deepspeed_zero3_equals_zero0_on_two_ranks(cache_dir, tmp_path):
    config = json.loads((EXAMPLES / "zero3.json").read_text())
    losses = {}
    for stage in (0, 3):
        config["zero_optimization"] = {"stage": stage} if stage == 0 else config["zero_optimization"]
        path = tmp_path / f"zero{stage}.json"
        path.write_text(json.dumps(config))
        out = tmp_path / f"run{stage}"
        run_deepspeed(["--steps", "5", "--out", str(out), "--deepspeed", str(path)], cache_dir,
                      script=EXAMPLES / "hf_trainer.py", timeout=400)
        history = json.loads((out / "log_history.json").read_text())
        losses[stage] = [r["loss"] for r in history if "loss" in r]
    assert len(losses[3]) == 5
    assert losses[3] == pytest.approx(losses[0], rel=1e-5)
