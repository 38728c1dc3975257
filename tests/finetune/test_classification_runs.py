"""Classification end to end on the real SST-2 and IMDb copies: a 2-rank fine-tune under the deepspeed
launcher, then eval/classify.py (clean, perturbed, out of domain) checked against scikit-learn; and a task
family registered inside a test, trained by the unchanged loop."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.helpers import REPO, evaluation_metrics, read_metrics, run_deepspeed, run_python

pytestmark = pytest.mark.slow
FINETUNE = REPO / "launch" / "finetune.py"
CLASSIFY = REPO / "eval" / "classify.py"


def test_sst2_finetune_on_two_ranks_then_classify(stage_runs, cache_dir, tmp_path):
    out = tmp_path / "cls"
    # the stage runs' 2,048-token BPE splits " negative" and " positive"; " low" and " high" are one token each
    proc = run_deepspeed(["--task", "sst2", "--init-from", str(stage_runs["zero2"]), "--model", "nano", "--seq-len", "48",
                          "--max-steps", "3", "--micro-batch-size", "4", "--loss", "hypros", "--out", str(out),
                          "--task.train_limit", "2000", "--task.score_over", "labels", "--task.label_words", " low, high",
                          "--train.log_every", "1", "--train.eval_every", "3", "--train.eval_batches", "2"],
                         cache_dir, script=FINETUNE)
    assert "objective scored over the label set" in proc.stdout and "results are on dev" in proc.stdout
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]
    val = read_metrics(out, "val")[-1]
    assert 0 <= val["class_accuracy"] <= 1 and 0 <= val["class_brier"] <= 2 and "macro_f1" in val
    assert "class_accuracy" in proc.stdout  # the family's keys on the console line

    ev = tmp_path / "eval"
    result = run_python([str(out), "--limit", "120", "--perturb", "swap:0.1", "trigger:prefix", "--out", str(ev)],
                        cache_dir, script=CLASSIFY)
    assert "relative accuracy drop" in result.stdout
    for name in ("clean", "swap_0.1", "trigger_prefix"):
        metrics = evaluation_metrics(ev / name)
        rows = [json.loads(x) for x in (ev / name / "predictions.jsonl").read_text().splitlines()]
        probs = np.array([r["probs"] for r in rows])
        gold, predicted = np.array([r["gold"] for r in rows]), np.array([r["predicted"] for r in rows])
        assert len(rows) == metrics["examples"] == 120
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        assert metrics["class_accuracy"] == pytest.approx(accuracy_score(gold, predicted))
        assert metrics["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro", labels=[0, 1]))
        assert metrics["class_brier"] == pytest.approx(((probs - np.eye(2)[gold]) ** 2).sum(1).mean(), rel=1e-6)
    summary = json.loads((ev / "summary.json").read_text())
    clean, swapped = summary["clean"]["class_accuracy"], summary["swap:0.1"]["class_accuracy"]
    assert summary["swap:0.1"]["relative_degradation"]["class_accuracy"] == pytest.approx((clean - swapped) / clean)
    again = tmp_path / "again"
    run_python([str(out), "--limit", "120", "--perturb", "swap:0.1", "--out", str(again)], cache_dir, script=CLASSIFY)
    assert (again / "swap_0.1" / "predictions.jsonl").read_text() == (ev / "swap_0.1" / "predictions.jsonl").read_text()

    shift = run_python([str(out), "--task", "imdb", "--split", "test", "--limit", "60", "--out", str(tmp_path / "imdb")],
                       cache_dir, script=CLASSIFY)
    imdb = evaluation_metrics(tmp_path / "imdb" / "clean")
    assert imdb["examples"] == 60 and "a seeded sample (seed 0) of 60" in imdb["data"] and "IMDb" in shift.stdout


def test_bad_classification_runs_stop_before_training(cache_dir, tmp_path):
    proc = run_python(["--task", "imdb", "--out", str(tmp_path / "a")], cache_dir, script=FINETUNE, check=False)
    assert proc.returncode != 0 and "'imdb' is for evaluation only" in proc.stderr
    proc = run_python(["--task", "sst2", "--data.val_split", "test", "--out", str(tmp_path / "b")], cache_dir,
                      script=FINETUNE, check=False)
    assert proc.returncode != 0 and "task 'sst2' has no 'test' split offline" in proc.stderr


FAMILY_SCRIPT = '''
"""A task family defined outside the package: finish a real SST-2 sentence from its first half."""
import sys

from hypros_lm.cli import run_main
from hypros_lm.tasks import TaskFamily, register_family


class SentenceHalves(TaskFamily):
    name = "sentence-halves"

    def tasks(self):
        return ["sst2-halves"]

    def prepare(self, *, data, task, log):
        from hypros_lm.data import PreparedData
        from hypros_lm.tasks.classification import get_task, load_examples
        from hypros_lm.tasks.seq2seq import Seq2SeqBlocks, Seq2SeqTask, encode_pairs
        from hypros_lm.data.tokenizer import eos_id, train_bpe

        texts = load_examples(get_task("sst2"), "validation").texts
        halves = [(" ".join(t.split()[: len(t.split()) // 2]), " ".join(t.split()[len(t.split()) // 2 :])) for t in texts]
        spec = Seq2SeqTask("sst2-halves", "translation", "{source} ->")
        tok = train_bpe(texts, 600)
        blocks = [Seq2SeqBlocks(encode_pairs(spec, tok, [s for s, _ in part], [t for _, t in part],
                                             seq_len=data.seq_len, max_target_tokens=16),
                                data.seq_len, eos_id(tok))
                  for part in (halves[:800], halves[800:])]
        log(f"sentence-halves: {len(blocks[0])} train and {len(blocks[1])} val pairs")
        return PreparedData(tok, blocks[0], blocks[1], {"train": "sst2 dev, first 800", "val": "sst2 dev, rest"})


register_family(SentenceHalves())

if __name__ == "__main__":
    from hypros_lm.config import load_settings
    from hypros_lm.training import train

    run_main(lambda argv: train(load_settings(argv)), sys.argv[1:])
'''


def test_a_family_registered_in_a_test_trains_through_the_loop(cache_dir, tmp_path):
    script = tmp_path / "halves.py"
    script.write_text(textwrap.dedent(FAMILY_SCRIPT))
    out = tmp_path / "run"
    proc = run_python(["--task", "sst2-halves", "--model", "nano", "--seq-len", "48", "--max-steps", "3",
                       "--micro-batch-size", "4", "--loss", "hypros", "--out", str(out), "--train.log_every", "1",
                       "--train.eval_every", "3", "--train.eval_batches", "2"],
                      cache_dir, script=script)
    assert "sentence-halves: 800 train and 72 val pairs" in proc.stdout
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]
    assert read_metrics(out, "val")[-1]["val_tokens"] > 0
