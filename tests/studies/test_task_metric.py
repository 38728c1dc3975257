"""Studies of generation tasks are judged on their generation score first (BLEU for translation, ROUGE-L for
summarization; higher is better): the criteria, the paired comparisons and the robustness degradation."""

from __future__ import annotations

import pytest

from hypros_lm.studies.analysis import analyse
from hypros_lm.studies.results import RunResult, headline, task_metric
from hypros_lm.studies.spec import Study


def _study(task: str) -> Study:
    return Study(name="t", task=task, variations={"log": {}, "brier": {}, "hypros": {}}, models=["nano"],
                 seeds=[1, 2, 3], robustness=["swap"], evaluations={"swap": {"task": task, "perturb": "swap:0.1"}})


def test_the_task_metric_is_bleu_for_translation_rouge_l_for_summaries_and_nll_otherwise():
    assert task_metric(_study("multi30k-en-de")) == "bleu"
    assert task_metric(_study("xsum")) == "rougeL_f"
    assert task_metric(_study("pretrain")) is None and task_metric(_study("sst2")) is None


def test_a_generation_evaluation_reads_as_target_token_scores_and_output_scores():
    # the shape of tasks/seq2seq.evaluate_task's metrics.json, with a perturbation
    metrics = {"task": "multi30k-en-de", "examples": 8,
               "target_tokens": {"loss_log": 3.2, "loss_brier": 0.8, "ece_10": 0.03, "accuracy": 0.4},
               "clean": {"bleu": 10.0, "chrf": 30.0, "bleu_signature": "nrefs:1"},
               "swap:0.1": {"bleu": 9.0, "chrf": 28.0, "relative_degradation": 0.1,
                            "target_tokens": {"loss_log": 3.5, "loss_brier": 0.85, "ece_10": 0.05, "accuracy": 0.37}}}
    got = headline(metrics)
    assert got["loss_log"] == 3.5 and got["ece_10"] == 0.05  # scored given the perturbed sources
    assert (got["bleu"], got["chrf"], got["relative_degradation"]) == (9.0, 28.0, 0.1)  # the perturbed outputs'
    clean_only = {k: v for k, v in metrics.items() if k != "swap:0.1"}
    assert headline(clean_only)["bleu"] == 10.0 and "relative_degradation" not in headline(clean_only)
    assert headline(clean_only)["loss_log"] == 3.2


def _run(variation: str, seed: int, bleu: float, swap_bleu: float, nll: float = 3.0) -> RunResult:
    curve = [{"step": s, "elapsed_s": s, "loss_log": 5.0 - s / 100} for s in (100, 200)]
    run = RunResult(f"{variation}-nano-s{seed}", variation, "nano", seed, 1_000, 10_000, 200, curve,
                    [{"step": 200, "tokens": 10_000, "tokens_per_s": 100.0}],
                    {"swap": {"loss_log": nll + 0.1, "ece_10": 0.05, "accuracy": 0.3, "bleu": swap_bleu,
                              "relative_degradation": (bleu - swap_bleu) / bleu}})
    run.test = {"nll": nll + seed / 100, "brier": 0.8, "ece_10": 0.04, "accuracy": 0.4, "auc": 1.0, "bleu": bleu}
    return run


@pytest.mark.parametrize(("hypros_bleu", "verdict"), [((12.1, 12.4, 12.2), "pass"), ((9.9, 10.2, 10.0), "fail")])
def test_c2_compares_bleu_with_higher_better(hypros_bleu, verdict):
    runs = [_run("log", s, b, b - 1) for s, b in zip((1, 2, 3), (10.0, 10.3, 10.1), strict=True)]
    runs += [_run("brier", s, 8.0 + s / 10, 7.0) for s in (1, 2, 3)]
    runs += [_run("hypros", s, b, b - 0.5) for s, b in zip((1, 2, 3), hypros_bleu, strict=True)]
    res = analyse(_study("multi30k-en-de"), runs)
    c2 = next(c for c in res["criteria"] if c["id"] == "C2")
    assert c2["verdict"] == verdict and "test BLEU" in c2["text"] and c2["measurements"][0]["quantity"].startswith("BLEU")
    hypros = next(r for r in res["summary"] if r["variation"] == "hypros")
    assert hypros["bleu"][0] == pytest.approx(sum(hypros_bleu) / 3)
    assert hypros["swap:drop"][0] == pytest.approx(sum(0.5 / b for b in hypros_bleu) / 3)  # the evaluation's own
    assert any(c["label"] == "test BLEU" and c["vs"] == "log" for c in res["comparisons"])
    c4 = next(c for c in res["criteria"] if c["id"] == "C4")
    assert any(m["quantity"].startswith("swap BLEU") for m in c4["measurements"])
