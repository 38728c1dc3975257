"""HyProS through Axolotl's own command line: ``python -m axolotl.cli.train`` in the Axolotl environment
(scripts/axolotl_env.sh builds it, or reuses it while its inputs are unchanged), offline, on real WikiText text.

The runs' numbers are checked against references computed here, in the project's own environment, from the full
logits of the same weights on the batches the run's trainer received (recorded by tests/integrations/
axolotl_recorder.py, a plugin that only observes). Where the Axolotl environment cannot be built, these tests fail:
they never skip.
"""

from __future__ import annotations

import ast
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from hypros_lm import LambdaSchedule
from hypros_lm.data.sources import data_dir
from tests.helpers import REPO

pytestmark = pytest.mark.slow
EXAMPLES = REPO / "examples" / "axolotl"
PLUGIN = "hypros_lm.integrations.axolotl.HyProSPlugin"
RECORDER = "tests.integrations.axolotl_recorder.Recorder"


@pytest.fixture(scope="module")
def axolotl_python() -> Path:
    """The Axolotl environment's interpreter, built (or found built) by its set-up script: an error if it cannot be."""
    subprocess.run(["bash", "scripts/axolotl_env.sh"], cwd=REPO, check=True)  # a no-op once built
    return REPO / os.environ.get("HYPROS_AXOLOTL_ENV", ".venv-axolotl") / "bin" / "python"  # absolute: as given


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    """The examples' tiny Llama (config and WikiText tokenizer) with seeded random weights saved, so that the
    references here start from the run's own weights. Initialised wide (std 0.5, where transformers' 0.02 gives
    near-uniform predictions, whose scores hardly depend on the batch): the reference tells batches apart."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("axolotl") / "base"
    shutil.copytree(EXAMPLES / "tiny-llama", folder)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder, initializer_range=0.5)).save_pretrained(folder)
    return folder


def _lines(tmp_path: Path, n: int = 8) -> Path:
    """n real WikiText-2 lines short enough for one sequence each: one batch of n rows."""
    text = (data_dir() / "wikitext-2-raw" / "wiki.valid.raw").read_text(encoding="utf-8").splitlines()
    rows = [t.strip() for t in text if 80 < len(t.strip()) < 300 and not t.startswith(" =")][:n]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _config(example: str, tmp_path: Path, base_model: Path, **changes) -> dict:
    """The example's config on the test's weights and eight real lines (one batch a step), two steps, every step
    logged, the recorder listed; ``changes`` on top (a None value removes a key)."""
    config = yaml.safe_load((EXAMPLES / example).read_text())
    config.update(base_model=str(base_model), reinit_weights=False, val_set_size=0, eval_strategy="no",
                  datasets=[{"path": str(_lines(tmp_path)), "ds_type": "text", "type": "completion"}],
                  dataset_prepared_path=str(tmp_path / "prepared"), output_dir=str(tmp_path / "out"),
                  micro_batch_size=8, max_steps=2, warmup_steps=0, logging_steps=1, eval_steps=None,
                  plugins=[*config.get("plugins", []), RECORDER])
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def _train(python: Path, config: dict | str, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``python -m axolotl.cli.train`` on a config (a dict, or an example's path as written); returns the process and
    what the recorder saved (empty without it)."""
    if isinstance(config, dict):
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(config))
        config = str(path)
    record = tmp_path / "record.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYPROS_AXOLOTL_RECORD": str(record), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([str(python), "-m", "axolotl.cli.train", config, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    return proc, (torch.load(record, weights_only=False) if record.exists() else {})


def _succeeded(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]


def _scores_of_first_batch(base_model: Path, record: dict) -> dict[str, float]:
    """Token means of NLL and the Brier score Σ(p − onehot)² of the first step's batch, from the full logits of the
    saved weights, in float64."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float64).eval()
    batch = record["batches"][0]
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    logits, targets = logits[keep], targets[keep]
    p = torch.softmax(logits, -1)
    onehot = torch.nn.functional.one_hot(targets, p.shape[-1]).double()
    return {"log": float(torch.nn.functional.cross_entropy(logits, targets)),
            "brier": float(((p - onehot) ** 2).sum(-1).mean())}


def _printed_logs(output: str) -> list[dict]:
    """The log dicts Axolotl prints (``{'loss': '5.809', ...}``), values as floats."""
    logs = [ast.literal_eval(m) for m in re.findall(r"\{'(?:loss|eval_loss)'.*?\}", output)]
    return [{k: float(v) for k, v in log.items()} for log in logs]


def test_the_example_trains_hypros_as_written(axolotl_python, tmp_path):
    """examples/axolotl/hypros.yml, only its output folders moved: λ follows the schedule, each component and the
    evaluation's calibration are logged, and ``ppl`` is exp of the log-loss component, not of the mixture."""
    proc, _ = _train(axolotl_python, "examples/axolotl/hypros.yml", tmp_path, f"--output_dir={tmp_path / 'out'}",
                     f"--dataset_prepared_path={tmp_path / 'prepared'}")
    _succeeded(proc)
    logs = _printed_logs(proc.stdout + proc.stderr)
    train = [log for log in logs if "loss" in log]
    example = yaml.safe_load((EXAMPLES / "hypros.yml").read_text())
    assert len(train) == example["max_steps"] // example["logging_steps"]
    schedule = LambdaSchedule("hypros", total_steps=example["max_steps"], t0=0.3, tau=0.1)
    steps = range(example["logging_steps"], example["max_steps"] + 1, example["logging_steps"])
    assert [log["hypros/lambda"] for log in train] == pytest.approx([schedule(s - 1) for s in steps], rel=1e-3)
    for log in train:
        assert {"hypros/log", "hypros/brier", "hypros/spherical", "hypros/entropy", "hypros/accuracy"} <= set(log)
        assert log["ppl"] == pytest.approx(math.exp(log["hypros/log"]), rel=2e-3)
    assert train[-1]["hypros/log"] < train[0]["hypros/log"] - 0.5  # it learns
    evaluations = [log for log in logs if "eval_loss" in log]
    assert evaluations
    for log in evaluations:
        assert {"eval_log", "eval_brier", "eval_spherical", "eval_ece"} <= set(log)
        assert log["eval_ppl"] == pytest.approx(math.exp(log["eval_log"]), rel=2e-3)


def test_at_lambda_one_the_loss_is_the_independent_brier_score_and_lora_trains_only_the_adapter(
        axolotl_python, base_model, tmp_path):
    """hypros-lora.yml at λ = 1 (``hypros_loss: brier``): the first logged loss is the Brier score of the first
    batch from the full logits of the same weights (LoRA's B starts at zero), and only the adapter's parameters move."""
    proc, record = _train(axolotl_python, _config("hypros-lora.yml", tmp_path, base_model, hypros_loss="brier"),
                          tmp_path)
    _succeeded(proc)
    first = record["log_history"][0]
    assert first["hypros/lambda"] == 1.0
    assert first["loss"] == pytest.approx(_scores_of_first_batch(base_model, record)["brier"], rel=1e-4)
    assert record["patched"]
    moved = {name for name, value in record["after"].items() if not torch.equal(value, record["before"][name])}
    assert moved and all("lora_" in name for name in moved), sorted(moved)
    assert all("lora_" in name for name in record["trainable"])
    assert any("lora_B" in name for name in moved)


def test_an_installed_plugin_without_its_key_changes_nothing(axolotl_python, base_model, tmp_path):
    """The environment installs the plugin as an ``axolotl.plugins`` entry point, so Axolotl loads it for every run: a
    config without ``hypros_loss`` (and without the plugin listed) trains Axolotl's own cross-entropy, unpatched."""
    hypros_keys = {key: None for key in yaml.safe_load((EXAMPLES / "hypros.yml").read_text()) if key.startswith("hypros_")}
    config = _config("hypros.yml", tmp_path, base_model, plugins=[RECORDER], **hypros_keys)
    proc, record = _train(axolotl_python, config, tmp_path)
    _succeeded(proc)
    assert f"Plugin loaded successfully: {PLUGIN}" in proc.stdout + proc.stderr
    assert not record["patched"]
    first = record["log_history"][0]
    assert not any(key.startswith("hypros/") for key in first)
    assert first["loss"] == pytest.approx(_scores_of_first_batch(base_model, record)["log"], rel=1e-4)
    assert first["ppl"] == pytest.approx(math.exp(first["loss"]), rel=1e-4)


def test_a_config_that_trains_another_objective_is_refused_at_validation(axolotl_python, base_model, tmp_path):
    """Another loss kernel, label smoothing outside the plugin and a preference trainer are refused before any model
    loads, each by its key."""
    config = _config("hypros.yml", tmp_path, base_model, liger_fused_linear_cross_entropy=True,
                     label_smoothing_factor=0.1, rl="dpo")
    config["plugins"].append("axolotl.integrations.liger.LigerPlugin")
    proc, record = _train(axolotl_python, config, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and not record
    assert "liger_fused_linear_cross_entropy (another loss kernel" in output
    assert "label_smoothing_factor (label smoothing: set hypros_label_smoothing instead)" in output
    assert "rl (a preference, reward or RL trainer" in output
    assert "Pre-saving" not in output  # refused before the model and data


def test_without_axolotl_the_plugin_says_how_to_get_it():
    """The project's own environment has no Axolotl: importing the plugin names the set-up script."""
    import importlib

    from hypros_lm.errors import MissingPackage

    with pytest.raises(MissingPackage, match="scripts/axolotl_env.sh"):
        importlib.import_module("hypros_lm.integrations.axolotl")
