"""Export of multi-rank ZeRO checkpoints to Hugging Face, and eval/lm.py on real WikiText."""

from __future__ import annotations

import math

import pytest
import torch

from hypros_lm.runs import RunFolder, export_hf, load_run
from tests.helpers import REPO, evaluation_metrics, run_python

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stage", ["zero0", "zero3"])
def test_export_gives_the_training_models_logits(stage_runs, stage, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = load_run(stage_runs[stage])
    out = export_hf(stage_runs[stage], tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tok("The first game in the series was released in Japan in 2008 .")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, run.model(ids, mode="logits"), rtol=1e-5, atol=1e-5)


def test_load_rejects_another_model_size(stage_runs, tmp_path):
    import shutil

    import yaml

    copy = tmp_path / "run"
    shutil.copytree(stage_runs["zero2"], copy)
    settings = RunFolder(copy).settings_dict()
    settings["model"]["name"] = "micro"
    RunFolder(copy).settings_file.write_text(yaml.safe_dump(settings))
    with pytest.raises(ValueError, match="from another model size"):
        load_run(copy)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint for step 3"):
        load_run(stage_runs["zero2"], step=3)


def test_eval_lm_writes_metrics_and_figures(stage_runs, cache_dir, tmp_path):
    out = tmp_path / "eval"
    run_python([str(stage_runs["zero2"]), "--split", "test", "--batches", "3", "--batch-size", "4",
                "--out", str(out)], cache_dir, script=REPO / "eval" / "lm.py")
    metrics = evaluation_metrics(out)
    assert metrics["val_tokens"] == 3 * 4 * 64
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss_log"]))
    assert 0 <= metrics["ece_10"] <= 1 and 0 <= metrics["ece_adaptive_10"] <= 1
    assert sum(r["count"] for r in metrics["reliability_10"]) == metrics["val_tokens"]
    assert "wiki.test.tokens" in metrics["data"]
    for name in ("reliability.png", "entropy_hist.png"):
        assert (out / name).stat().st_size > 1000


def test_eval_lm_rejects_a_missing_split(stage_runs, cache_dir):
    proc = run_python([str(stage_runs["zero2"]), "--data", "wikitext-2-raw-v1", "--split", "train"], cache_dir,
                      script=REPO / "eval" / "lm.py", check=False)
    assert proc.returncode == 2 and "no 'train' split offline" in proc.stderr


def test_plots_from_run_folders(stage_runs, cache_dir, tmp_path):
    proc = run_python([str(stage_runs["zero0"]), str(stage_runs["zero3"]), "--out", str(tmp_path)], cache_dir,
                      script=REPO / "eval" / "plots.py")
    for name in ("learning_curves_steps.png", "learning_curves_wallclock.png", "lambda_grad_norms.png"):
        assert (tmp_path / name).stat().st_size > 1000, proc.stdout
