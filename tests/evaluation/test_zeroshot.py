"""lm-evaluation-harness on the offline copies, through lm-eval's own task definitions."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from hypros_lm.data import data_dir
from hypros_lm.evaluation.zeroshot import attach_line_labels, boolq_string_labels, write_tasks
from tests.helpers import REPO, run_python

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="needs the offline data folder ../shared/data")


def _json_dataset(path):
    import datasets

    return datasets.load_dataset("json", data_files={"validation": str(path)}, split="validation")


def test_piqa_labels_come_from_the_separate_file():
    ds = attach_line_labels(_json_dataset(DATA / "piqa" / "valid.jsonl"), str(DATA / "piqa" / "valid-labels.lst"))
    labels = [int(x) for x in (DATA / "piqa" / "valid-labels.lst").read_text().split()]
    assert len(ds) == 1838 and ds["label"] == labels


def test_boolq_string_labels_become_class_ids():
    ds = boolq_string_labels(_json_dataset(DATA / "boolq" / "val.jsonl.gz"))
    with gzip.open(DATA / "boolq" / "val.jsonl.gz", "rt") as f:
        truth = [json.loads(line)["label"] for line in f]
    assert ds["label"] == [1 if str(t).lower() == "true" else 0 for t in truth]


def test_generated_tasks_include_the_builtin_definitions(tmp_path):
    described = write_tasks(tmp_path, ["lambada_openai", "arc_easy", "wikitext"], offline=True)
    arc = (tmp_path / "arc_easy_offline.yaml").read_text()
    assert "lm_eval/tasks/arc/arc_easy.yaml" in arc and "brier_score" in arc and "dataset_path: json" in arc
    assert "class: !function hypros_task_utils.ChoiceBrierTask" in arc
    assert "ChoiceBrierTask" not in (tmp_path / "lambada_openai_offline.yaml").read_text()  # not multiple choice
    pages = [json.loads(line)["page"] for line in (tmp_path / "wikitext_test.jsonl").read_text().splitlines()]
    raw = (DATA / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    assert "".join(pages) == raw  # every line of the file, in order, in exactly one page
    assert pages[0].lstrip(" \n").startswith("= Robert Boulter = ") and len(pages) == 62
    assert set(described) == {"lambada_openai_offline", "arc_easy_offline", "wikitext_offline"}


def test_online_tasks_keep_the_hub_data_and_add_the_brier_score(tmp_path):
    described = write_tasks(tmp_path / "online", ["arc_challenge", "piqa"], offline=False)
    arc = (tmp_path / "online" / "arc_challenge_hypros.yaml").read_text()
    assert "dataset_path" not in arc and "brier_score" in arc and "ChoiceBrierTask" in arc
    assert set(described) == {"arc_challenge_hypros", "piqa_hypros"}


def test_multiple_choice_brier_on_documents_with_3_4_and_5_choices(stage_runs, tmp_path):
    """lm-eval's own per-choice log-likelihoods, normalised by hand over each document's choices."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hypros_lm.runs import load_run, to_hf

    write_tasks(tmp_path, ["arc_easy"], offline=True)
    hf, tok = to_hf(load_run(stage_runs["zero2"]))
    picked = [93, 328, 0, 1, 500, 1001]  # ARC-Easy test documents with 3, 3, 4, 4, 5 and 5 choices
    out = lm_eval.simple_evaluate(model=HFLM(pretrained=hf, tokenizer=tok, batch_size=8, device="cpu"),
                                  tasks=["arc_easy_offline"], task_manager=TaskManager(include_path=str(tmp_path)),
                                  samples={"arc_easy_offline": picked}, log_samples=True, bootstrap_iters=10)
    samples = out["samples"]["arc_easy_offline"]
    assert sorted(len(x["doc"]["choices"]["text"]) for x in samples) == [3, 3, 4, 4, 5, 5]
    by_hand = []
    for sample in samples:
        ll = np.array([resp[0] for resp in sample["filtered_resps"]])
        p = np.exp(ll - ll.max()) / np.exp(ll - ll.max()).sum()
        onehot = np.eye(len(ll))[int(sample["target"])]
        by_hand.append(float(((p - onehot) ** 2).sum()))
        assert sample["brier_score"] == pytest.approx(by_hand[-1], rel=1e-9)
    result = out["results"]["arc_easy_offline"]
    assert result["brier_score,none"] == pytest.approx(np.mean(by_hand), rel=1e-9)
    assert result["brier_score_stderr,none"] == pytest.approx(np.std(by_hand, ddof=1) / np.sqrt(6), rel=1e-9)


@pytest.mark.slow
def test_zeroshot_runs_lm_eval_offline_on_a_trained_model(stage_runs, cache_dir, tmp_path):
    run_python([str(stage_runs["zero2"]), "--tasks", "lambada_openai", "arc_easy", "piqa", "wikitext",
                "--limit", "8", "--out", str(tmp_path)], cache_dir, script=REPO / "eval" / "zeroshot.py")
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"lambada_openai_offline", "arc_easy_offline", "piqa_offline", "wikitext_offline"}
    assert 0 <= results["arc_easy_offline"]["acc,none"] <= 1
    assert "brier_score,none" in results["piqa_offline"]
    assert results["lambada_openai_offline"]["perplexity,none"] > 1
    assert results["wikitext_offline"]["bits_per_byte,none"] > 0
    assert len((tmp_path / "summary.txt").read_text().splitlines()) == 4


def test_unknown_task_is_a_clear_error(stage_runs, cache_dir, tmp_path):
    proc = run_python([str(stage_runs["zero2"]), "--tasks", "squad", "--out", str(tmp_path)], cache_dir,
                      script=REPO / "eval" / "zeroshot.py", check=False)
    assert proc.returncode == 2 and "task(s) ['squad'] have no offline copy" in proc.stderr


def test_evaluation_falls_back_to_the_cpu_and_says_so():
    import torch

    from hypros_lm.evaluation.device import choose_device

    said = []
    device, dtype = choose_device("auto", run_precision="bf16", log=said.append)
    if torch.cuda.is_available():
        assert device.type == "cuda" and dtype == torch.bfloat16
        return
    assert (device.type, dtype) == ("cpu", torch.float32)  # bf16 runs evaluate in fp32 on the CPU
    assert said == ["device: cpu, float32 (CUDA is not available; --device cuda to require it)"]
    with pytest.raises(ValueError, match="--device cuda: CUDA is not available here"):
        choose_device("cuda", log=said.append)
    with pytest.raises(ValueError, match="--device 'tpu'"):
        choose_device("tpu", log=said.append)


def test_fused_evaluation_and_lm_eval_rolling_loglikelihood_agree(stage_runs):
    """The same text, the same windows: the project's per-token fused scores against lm-eval's
    loglikelihood_rolling on the exported model (full logits, log_softmax), in fp32."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from hypros_lm.evaluation.lm import rolling_windows, window_nll
    from hypros_lm.evaluation.zeroshot import _wikitext_pages
    from hypros_lm.runs import load_run, to_hf

    run = load_run(stage_runs["zero2"])
    hf, tok = to_hf(run)
    text = _wikitext_pages(DATA / "wikitext-2-raw" / "wiki.test.raw")[1]["page"]  # a real article, 3k+ tokens
    max_len = 64
    lm = HFLM(pretrained=hf, tokenizer=tok, batch_size=4, max_length=max_len, device="cpu")
    request = Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=0)
    (theirs,) = lm.loglikelihood_rolling([request], disable_tqdm=True)
    ids = lm.tok_encode(text)
    assert len(ids) > 20 * max_len and len(ids) % max_len  # many windows, and a short last one
    ours = torch.cat([window_nll(run.model, w) for w in rolling_windows(ids, prefix_id=lm.prefix_token_id, max_len=max_len)])
    assert len(ours) == len(ids)
    assert -ours.sum().item() == pytest.approx(theirs, rel=1e-4)


@pytest.mark.slow
def test_in_loop_lm_eval_under_zero3_with_two_ranks_leaves_training_unchanged(stage_runs, cache_dir, tmp_path):
    """The stage_runs ZeRO-3 run again, with lm-eval tasks at each evaluation (requests shared out over the
    ranks, windows too): its metrics are logged, and the training is step for step the same."""
    from tests.helpers import TINY_RUN, read_metrics, run_deepspeed

    proc = run_deepspeed([*TINY_RUN, "--loss", "hypros", "--max-steps", "4", "--ds-config", "zero3",
                          "--train.lm_eval_tasks", "arc_easy:6,wikitext:2", "--out", str(tmp_path)], cache_dir)
    assert "lm-eval @ 3: arc_easy_offline/acc" in proc.stdout
    with_lm_eval, without = read_metrics(tmp_path), read_metrics(stage_runs["zero3"])
    for key in ("loss", "loss_log", "grad_norm", "param_norm", "lambda", "lr"):
        assert [r[key] for r in with_lm_eval] == [r[key] for r in without], key
    assert [r["loss"] for r in read_metrics(tmp_path, "val")] == [r["loss"] for r in read_metrics(stage_runs["zero3"], "val")]
    records = read_metrics(tmp_path, "lm_eval")
    assert [r["step"] for r in records] == [3, 4]
    for r in records:
        assert 0 <= r["lm_eval/arc_easy_offline/acc"] <= 1 and 0 <= r["lm_eval/arc_easy_offline/brier_score"] <= 2
        assert "lm_eval/arc_easy_offline/acc_stderr" in r and r["lm_eval/wikitext_offline/bits_per_byte"] > 0
