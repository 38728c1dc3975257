"""The loop trains the per-token objective of the whole global batch, however it is split: fine-tunes whose examples
score different numbers of target tokens give the same first step on 1 rank × 1 micro-batch of 4 as on 2 ranks ×
2 micro-batches of 1 (the same four examples), loss and gradient norm alike, and the training record weighs each
micro-batch by its tokens; pretraining (full blocks, every token scored) gives the numbers it gave before."""

from __future__ import annotations

import pytest

from tests.helpers import REPO, TINY_RUN, read_metrics, run_deepspeed, run_python

pytestmark = pytest.mark.slow
FINETUNE = REPO / "launch" / "finetune.py"

TASKS = {
    "multi30k-en-de": ["--seq-len", "96", "--task.max_target_tokens", "24", "--task.train_limit", "64"],
    "sst2": ["--seq-len", "48", "--task.train_limit", "64", "--task.score_over", "labels",
             "--task.label_words", " low, high"],
}


def _first_step(init, out, task: str, *, ranks: int, micro: int, accum: int, cache_dir) -> dict:
    args = ["--task", task, *TASKS[task], "--init-from", str(init), "--model", "nano", "--max-steps", "1",
            "--micro-batch-size", str(micro), "--train.grad_accum", str(accum), "--loss", "hypros",
            "--train.eval_every", "0", "--train.component_grad_every", "1", "--ds-config", "zero2", "--out", str(out)]
    if ranks == 1:
        run_python(args, cache_dir, script=FINETUNE)
    else:
        run_deepspeed(args, cache_dir, script=FINETUNE, ranks=ranks)
    return read_metrics(out)[0]


@pytest.mark.parametrize("task", list(TASKS))
def test_a_fine_tune_s_first_step_does_not_depend_on_the_split(task, stage_runs, cache_dir, tmp_path):
    whole = _first_step(stage_runs["zero2"], tmp_path / "whole", task, ranks=1, micro=4, accum=1, cache_dir=cache_dir)
    split = _first_step(stage_runs["zero2"], tmp_path / "split", task, ranks=2, micro=1, accum=2, cache_dir=cache_dir)
    assert whole["scored_tokens"] == split["scored_tokens"] >= 4  # the same four examples
    for key in ("loss", "grad_norm", "loss_log", "loss_brier", "accuracy", "entropy", "grad_norm_log",
                "grad_norm_bounded"):
        assert split[key] == pytest.approx(whole[key], rel=1e-5), key


def test_pretraining_s_first_steps_are_those_before_per_token_weighting(cache_dir, tmp_path):
    """Full blocks score every token, so the global per-token mean is the mean of the micro-batches' means: the
    numbers this run gave at 806a47e (micro-batch means averaged by DeepSpeed), recorded there on this machine."""
    run_python([*TINY_RUN, "--loss", "hypros", "--max-steps", "3", "--train.grad_accum", "2", "--ds-config", "zero0",
                "--train.eval_every", "0", "--out", str(tmp_path / "run")], cache_dir)
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3]
    for record, (loss, grad_norm) in zip(records, BEFORE, strict=True):
        assert record["loss"] == pytest.approx(loss, rel=1e-6)
        assert record["grad_norm"] == pytest.approx(grad_norm, rel=1e-6)


BEFORE = [(7.310593366622925, 0.6582595109939575), (3.749994158744812, 0.3660493493080139),
          (1.162913203239441, 0.02506745420396328)]
"""(loss, grad_norm) of steps 1-3 of the run above at 806a47e (its loop averaged the micro-batches' means)."""
