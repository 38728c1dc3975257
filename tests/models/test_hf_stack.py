"""`--model hf:<config or folder>` through the whole stack, on real WikiText-2: three architectures under the
deepspeed launcher (ZeRO-3 = ZeRO-0), a cut-and-resumed run = the uninterrupted one, the export as the same
class reproducing the run's validation loss, and a pretrained start."""

from __future__ import annotations

import json

import pytest
import torch

from hypros_lm.data import prepare_data
from hypros_lm.evaluation.lm import evaluate_blocks
from hypros_lm.models import HFCausalLM
from hypros_lm.runs import RunFolder, export_hf, load_run
from tests.helpers import REPO, TINY_VOCAB, evaluation_metrics, read_metrics, run_deepspeed, run_python, tiny_run
from tests.integrations.hf_models import COVERAGE, small_config

pytestmark = pytest.mark.slow
TIED = {"gpt2"}
# model type -> tied embeddings; llama is the ladder's class, under ZeRO-3 = ZeRO-0 in the stage runs
# (tests/training/test_launcher.py) and exported from them (tests/evaluation/test_export_and_eval.py)
ARCHITECTURES = {arch: arch in TIED for arch in COVERAGE["ZeRO-3"] if arch != "llama"}
STEPS = 5
FINETUNE = REPO / "launch" / "finetune.py"


def _run(model: str) -> list[str]:
    """5 HyProS steps of 4 × 64 tokens; validation (2 micro-batches per rank) at steps 3 and 5."""
    return [*tiny_run(model), "--loss", "hypros", "--max-steps", str(STEPS)]


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """A config.json folder per architecture (no weights, no tokenizer: the run trains its BPE)."""
    root = tmp_path_factory.mktemp("hf_configs")
    for model_type, tied in ARCHITECTURES.items():
        small_config(model_type, vocab=TINY_VOCAB, tie=tied).save_pretrained(root / model_type)
    return root


@pytest.fixture(scope="module")
def arch_runs(configs, cache_dir, tmp_path_factory):
    """(architecture, stage) -> run folder: each architecture under ZeRO-0 and ZeRO-3, 2 CPU ranks."""
    runs = {}
    for model_type in ARCHITECTURES:
        for stage in ("zero0", "zero3"):
            out = tmp_path_factory.mktemp(f"{model_type}_{stage}")
            run_deepspeed([*_run(f"hf:{configs / model_type}"), "--ds-config", stage, "--out", str(out)],
                          cache_dir)
            assert RunFolder(out).read_settings().model.name == f"hf:{configs / model_type}"
            runs[model_type, stage] = out
    return runs


def _train_losses(run_dir) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir)]


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_hf_architectures_train_under_zero3_as_under_zero0(arch_runs, model_type):
    z0, z3 = (arch_runs[model_type, stage] for stage in ("zero0", "zero3"))
    assert [r["step"] for r in read_metrics(z3)] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm", "param_norm"):  # gpt2: the tied embedding gathered by both of its modules
        assert [r[key] for r in read_metrics(z3)] == pytest.approx([r[key] for r in read_metrics(z0)], rel=1e-5), key
    assert [r["loss_log"] for r in read_metrics(z3, "val")] == pytest.approx(
        [r["loss_log"] for r in read_metrics(z0, "val")], rel=1e-5)
    assert _train_losses(z3)[-1] < _train_losses(z3)[0]  # it learns
    first = read_metrics(z3)[0]
    assert first["flops_per_token"] > 0 and first["tflops_per_device"] > 0


def test_a_cut_and_resumed_hf_run_equals_the_uninterrupted_one(arch_runs, configs, cache_dir, tmp_path):
    args = [*_run(f"hf:{configs / 'gpt2'}"), "--ds-config", "zero3", "--out", str(tmp_path)]
    run_deepspeed([*args, "--train.stop_at", "3"], cache_dir)
    cut = read_metrics(tmp_path)
    run_deepspeed([*args, "--resume"], cache_dir)
    assert read_metrics(tmp_path)[:3] == cut  # resumed at step 3: the records up to it kept, wall-clock included
    full = arch_runs["gpt2", "zero3"]
    assert _train_losses(tmp_path) == pytest.approx(_train_losses(full), rel=1e-6)
    assert read_metrics(tmp_path, "val")[-1]["loss"] == pytest.approx(read_metrics(full, "val")[-1]["loss"], rel=1e-6)


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_the_export_is_the_same_class_and_reproduces_the_validation_loss(arch_runs, model_type, tmp_path):
    from transformers import AutoModelForCausalLM

    run = arch_runs[model_type, "zero3"]
    loaded = load_run(run)
    assert isinstance(loaded.model, HFCausalLM)
    trained_class = type(loaded.model.lm)
    exported = AutoModelForCausalLM.from_pretrained(export_hf(run, tmp_path / "hf"), dtype=torch.float32)
    assert type(exported) is trained_class and exported.config.model_type == model_type
    data = prepare_data(loaded.settings.data)
    ranks = 2  # the run validated 2 micro-batches on each of 2 ranks: the same sequences as 4 on one
    scores = evaluate_blocks(HFCausalLM(exported), data.val, 2 * ranks, loaded.settings.train.micro_batch_size)
    assert scores["loss_log"] == pytest.approx(read_metrics(run, "val")[-1]["loss_log"], rel=1e-5)


@pytest.fixture(scope="module")
def pretrained_hf(stage_runs, tmp_path_factory):
    """The project's own trained model (the ZeRO-2 stage run) exported as a Hugging Face folder."""
    return export_hf(stage_runs["zero2"], tmp_path_factory.mktemp("pretrained") / "demo-hf")


@pytest.fixture(scope="module")
def finetunes(pretrained_hf, cache_dir, tmp_path_factory):
    """Two-step fine-tunes from the pretrained folder: MT and SST-2 (scored over its labels), name -> run folder."""
    root = tmp_path_factory.mktemp("finetunes")
    ft = ["--model", f"hf:{pretrained_hf}", "--max-steps", "2", "--micro-batch-size", "4", "--loss", "log-then-brier",
          "--train.log_every", "1", "--train.eval_every", "2", "--train.eval_batches", "1", "--task.train_limit", "200"]
    tasks = {"mt": ["--task", "multi30k-en-de", "--seq-len", "96"],
             "sst2": ["--task", "sst2", "--seq-len", "48", "--task.score_over", "labels", "--task.label_words", " low, high"]}
    for name, task in tasks.items():
        run_python([*ft, *task, "--out", str(root / name)], cache_dir, script=FINETUNE)
    return {name: root / name for name in tasks}


def test_a_pretrained_hf_folder_starts_where_eval_lm_puts_it(pretrained_hf, cache_dir, tmp_path):
    run_python(["--hf-dir", str(pretrained_hf), "--data", "wikitext-2-v1", "--seq-len", "64", "--batches", "2",
                "--batch-size", "4", "--out", str(tmp_path / "eval")], cache_dir, script=REPO / "eval" / "lm.py")
    reported = evaluation_metrics(tmp_path / "eval")["loss_log"]
    cont = tmp_path / "continued"
    run_python([*_run(f"hf:{pretrained_hf}"), "--max-steps", "2", "--train.eval_at_start", "true",
                "--out", str(cont)], cache_dir)
    assert RunFolder(cont).read_settings().data.tokenizer == str(pretrained_hf)  # not a BPE trained afresh
    start = read_metrics(cont, "val")[0]
    assert start["step"] == 0 and start["loss_log"] == pytest.approx(reported, rel=1e-5)


@pytest.mark.parametrize("name", ["mt", "sst2"])
def test_a_pretrained_hf_folder_fine_tunes(finetunes, name):
    train = read_metrics(finetunes[name])
    assert [r["step"] for r in train] == [1, 2] and all(r["loss"] > 0 for r in train)


def test_a_fine_tune_of_it_evaluates_zero_shot(finetunes, cache_dir, tmp_path):
    run_python([str(finetunes["mt"]), "--tasks", "lambada_openai", "--limit", "8", "--out", str(tmp_path / "zs")],
               cache_dir, script=REPO / "eval" / "zeroshot.py")
    results = json.loads((tmp_path / "zs" / "results.json").read_text())["results"]["lambada_openai_offline"]
    assert results["sample_len"] == 8 and 0 <= results["acc,none"] <= 1 and results["perplexity,none"] > 1
