"""Real `deepspeed` launcher runs with 2 CPU ranks on real WikiText-2."""

from __future__ import annotations

import math

import pytest

from hypros_lm.runs import RunFolder
from tests.helpers import (
    STAGE_RUN,
    TINY_RUN,
    leftover_shared_memory,
    read_metrics,
    run_deepspeed,
    run_python,
    wandb_history,
)

pytestmark = pytest.mark.slow

REQUIRED = {"step", "tokens", "lambda", "loss", "loss_log", "loss_brier", "loss_spherical", "grad_norm", "lr",
            "tokens_per_s", "elapsed_s", "accuracy", "entropy", "peak_mem_mb",
            "flops_per_token", "tflops_per_device", "time_forward_s", "time_backward_s", "time_optimizer_s",
            "param_norm", "model_state_mb", "model_state_params_mb"}


@pytest.mark.parametrize("stage", ["zero0", "zero2", "zero3"])
def test_metrics_file_is_complete(stage_runs, stage):
    train = read_metrics(stage_runs[stage])
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for r in train:
        assert REQUIRED <= set(r), REQUIRED - set(r)
        assert all(math.isfinite(r[k]) for k in REQUIRED if k != "step")
        assert r["tokens"] == r["step"] * 2 * 4 * 64  # ranks × micro-batch × seq_len
        assert r["loss"] == pytest.approx((1 - r["lambda"]) * r["loss_log"] + r["lambda"] * r["loss_brier"], rel=1e-5)
        assert r["tflops_per_device"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"] / 2 / 1e12)
        assert r["mfu"] is None and r["energy_j_per_step"] is None  # CPU: no peak given, no NVML
    assert [r["lambda"] for r in train] == pytest.approx([1 / (1 + math.exp(-(s - 1.2) / 0.4)) for s in range(4)])
    assert {"grad_norm_log", "grad_norm_bounded"} <= set(train[1])  # every 2nd step
    val = read_metrics(stage_runs[stage], "val")
    assert [r["step"] for r in val] == [3, 4]
    assert val[0]["val_tokens"] == 2 * 2 * 4 * 64
    assert 0.0 <= val[0]["ece_10"] <= 1.0 and val[0]["perplexity"] == pytest.approx(math.exp(val[0]["loss_log"]))
    assert RunFolder(stage_runs[stage]).has_checkpoint(4)


def test_zero3_head_gives_the_same_losses_as_zero0(stage_runs):
    """A fused head reading a ZeRO-3-partitioned weight outside its forward would see an empty shard."""
    for key in ("loss", "grad_norm", "param_norm"):  # ZeRO-3's norms are summed from the ranks' shards
        ref = [r[key] for r in read_metrics(stage_runs["zero0"])]
        for stage in ("zero2", "zero3"):
            got = [r[key] for r in read_metrics(stage_runs[stage])]
            assert got == pytest.approx(ref, rel=1e-4), (stage, key)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])  # zero3: a model partitioned by zero.Init, restored
def test_resumed_run_reproduces_uninterrupted_losses(stage_runs, tmp_path, cache_dir, stage):
    args = [*STAGE_RUN, "--ds-config", stage, "--out", str(tmp_path)]
    run_deepspeed([*args, "--train.stop_at", "2"], cache_dir)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2] and RunFolder(tmp_path).has_checkpoint(2)
    run_deepspeed([*args, "--resume"], cache_dir)
    full, resumed = read_metrics(stage_runs[stage]), read_metrics(tmp_path)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for key in ("loss", "loss_log", "loss_brier", "lambda", "lr", "grad_norm"):
        assert [r[key] for r in resumed] == [r[key] for r in full], key  # identical on CPU
    val = [{r["step"]: r["loss"] for r in read_metrics(run, "val")} for run in (tmp_path, stage_runs[stage])]
    assert val[0] == {2: val[0][2], **val[1]}  # the cut run also validated where it stopped


def test_single_process_without_launcher_bf16_and_a_score_family(tmp_path, cache_dir):
    """HyProS with the power score of order 3 (score-smoothed) as its partner: the stack trains and reports it."""
    run_python([*TINY_RUN, "--max-steps", "2", "--precision", "bf16", "--loss", "hypros", "--loss.bounded", "power",
                "--loss.alpha", "3", "--loss.score_smoothing", "0.1", "--out", str(tmp_path)], cache_dir)
    train, val = read_metrics(tmp_path), read_metrics(tmp_path, "val")
    assert [r["step"] for r in train] == [1, 2]
    for record in (*train, *val):
        assert {"loss_brier", "loss_spherical", "loss_power-3"} <= set(record)
        assert 0.0 <= record["loss_power-3"] <= 1.5 and math.isfinite(record["loss"])
    assert val and RunFolder(tmp_path).settings_dict()["loss"]["alpha"] == 3.0


def test_zero3_offload_accumulation_checkpointing_and_wandb_offline(tmp_path, cache_dir):
    run_deepspeed([*TINY_RUN, "--loss", "log-then-brier", "--max-steps", "2", "--ds-config", "zero3_offload",
                   "--train.grad_accum", "2", "--model.activation_checkpointing", "true",
                   "--telemetry.wandb", "offline", "--out", str(tmp_path)],
                  cache_dir)  # the flag wins over the tests' WANDB_MODE=disabled
    train = read_metrics(tmp_path)
    assert [r["tokens"] for r in train] == [2 * 2 * 4 * 64, 2 * 2 * 2 * 4 * 64]  # 2 ranks × 2 micro-steps
    assert [r["lambda"] for r in train] == [0.0, 1.0]  # the switch at 0.5·T
    # wandb keeps training and validation apart: at step 2, which also evaluated, both values of every shared metric
    history, (val,) = wandb_history(tmp_path), read_metrics(tmp_path, "val")
    shared = {k for k in set(train[1]) & set(val) if isinstance(val[k], float)} - {"elapsed_s"}
    assert {"loss", "loss_log", "loss_brier", "accuracy", "entropy"} <= shared
    for key in shared:
        assert history[2][f"train/{key}"] == pytest.approx(train[1][key]), key
        assert history[2][f"val/{key}"] == pytest.approx(val[key]), key
    assert history[1]["eff/tokens_per_s"] == pytest.approx(train[0]["tokens_per_s"])


@pytest.mark.parametrize("stage", ["zero0", "zero2", "zero3"])
def test_a_finished_run_leaves_no_shared_memory_behind(stage_runs, stage):
    """DeepSpeed's CPU all-reduce keeps 67 MB buffers in /dev/shm (memory) per rank and never removes them."""
    assert leftover_shared_memory(stage_runs[stage]) == []
