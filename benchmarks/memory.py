"""Model-state memory per rank under each ZeRO stage, measured beside DeepSpeed's own estimate.

    python benchmarks/memory.py                                   # base, bf16, stages 0-3 and 3-offload, 1 and 2 ranks
    python benchmarks/memory.py --model large --precision fp32 --stages zero3 zero3_offload --worlds 2 --seq-len 256

Each cell is a real training run (`deepspeed --num_gpus W launch/pretrain.py`, the product's own code
path) on real WikiText-2 for a few steps. From its metrics.jsonl (the last logged step):

    state MiB     model-state bytes one rank holds, counted from the engine's tensors at the moment the
                  optimizer steps (parameters, gradients, fp32 master weights, Adam moments, ZeRO buffers);
                  the largest rank's
    estimate MiB  DeepSpeed's estimate of the same per rank: estimate_zero2_model_states_mem_needs for
                  stages 0-2 (stage 0 as one rank: nothing is partitioned), estimate_zero3_... for stage 3,
                  the numeric cores of the estimate_zero*_model_states_mem_needs_all_live functions,
                  with additional_buffer_factor=1 (model states alone)
    peak RSS MiB  peak resident memory of the largest rank (the process's own high-water mark: on CPU
                  freed memory is rarely returned, so this is an upper bound, and includes activations,
                  DeepSpeed and Python)
    s/step        median seconds per step after the first
    whole run s   the launch's wall time, start-up and data included

The ratio state/estimate should lie within 10 % of 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mdtable import print_table

REPO = Path(__file__).resolve().parents[1]
STAGES = ["zero0", "zero1", "zero2", "zero3", "zero3_offload"]


def estimate_bytes(model_name: str, vocab: int, stage: str, world: int) -> int:
    """DeepSpeed's per-rank model-state estimate for bf16 mixed precision on one node of `world` ranks."""
    import torch
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    from hypros_lm.models import ModelSettings, build_model

    with torch.device("meta"):  # shapes only
        model = build_model(ModelSettings(name=model_name, vocab_size=vocab), vocab)
    # what deepspeed's model_to_params computes (it tells shared parameters apart by data_ptr, which is 0
    # for every meta tensor): distinct parameters, and the largest parameter count of one module
    total = sum({id(p): p.numel() for p in model.parameters()}.values())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    if stage in ("zero0", "zero1", "zero2"):
        ranks = 1 if stage == "zero0" else world
        _, device = estimate_zero2_model_states_mem_needs(total, num_gpus_per_node=ranks, cpu_offload=False,
                                                          additional_buffer_factor=1.0)
        return device
    offload = stage == "zero3_offload"
    host, device, _ = estimate_zero3_model_states_mem_needs(
        total, largest, num_gpus_per_node=world, cpu_offload=offload, cpu_offload_params=offload,
        zero_init=True, additional_buffer_factor=1.0)
    # offloaded states are counted per node in `host`; on CPU both "devices" are this rank's memory
    return device + (host // world if offload else 0)


def run_cell(args, stage: str, world: int, folder: Path) -> dict:
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", str(world), "--master_port",
           str(29000 + os.getpid() % 1000 + world * 7 + STAGES.index(stage)), str(REPO / "launch" / "pretrain.py"),
           "--model", args.model, "--precision", args.precision, "--ds-config", stage, "--max-steps", str(args.steps),
           "--seq-len", str(args.seq_len), "--micro-batch-size", "1", "--data.vocab_size", str(args.vocab_size),
           "--train.log_every", "1", "--train.eval_every", "0", "--train.component_grad_every", "0",
           "--telemetry.wandb", "disabled", "--out", str(folder)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{stage} × {world} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    from hypros_lm.runs import RunFolder

    train = RunFolder(folder).metrics("train")
    times = [r["time_forward_s"] + r["time_backward_s"] + r["time_optimizer_s"] for r in train[1:]]
    env_file = RunFolder(folder).environment()
    return {"state_mb": train[-1]["model_state_mb"], "peak_mb": train[-1]["peak_mem_mb"],
            "s_per_step": statistics.median(times), "params": env_file["num_parameters"], "wall_s": time.time() - start}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base")
    parser.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES)
    parser.add_argument("--worlds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    args = parser.parse_args(argv)

    print(f"model {args.model}, {args.precision}, micro-batch 1 × {args.seq_len} tokens, vocabulary {args.vocab_size}, "
          f"{args.steps} steps on WikiText-2; per rank, largest rank")
    print(f"{'stage':>14} {'ranks':>5} {'state MiB':>10} {'estimate MiB':>13} {'state/est':>10} {'peak RSS MiB':>13} "
          f"{'s/step':>8}", flush=True)
    results, table = {}, []
    with tempfile.TemporaryDirectory(prefix="hypros-memory-") as tmp:
        for world in args.worlds:
            for stage in args.stages:
                cell = run_cell(args, stage, world, Path(tmp) / f"{stage}-{world}")
                vocab = -(-args.vocab_size // 64) * 64
                est = estimate_bytes(args.model, vocab, stage, world) / 2**20
                results[(stage, world)] = cell
                print(f"{stage:>14} {world:>5} {cell['state_mb']:>10.1f} {est:>13.1f} {cell['state_mb'] / est:>10.3f} "
                      f"{cell['peak_mb']:>13.0f} {cell['s_per_step']:>8.2f}", flush=True)
                table.append([stage, str(world), f"{cell['state_mb']:.1f}", f"{est:.1f}", f"{cell['state_mb'] / est:.3f}",
                              f"{cell['peak_mb']:.0f}", f"{cell['s_per_step']:.2f}", f"{cell['wall_s']:.0f}"])
    if ("zero0", 2) in results and ("zero3", 2) in results:
        z0, z3 = results[("zero0", 2)], results[("zero3", 2)]
        print(f"2 ranks, ZeRO-3 / ZeRO-0: model states {z3['state_mb'] / z0['state_mb']:.3f}, "
              f"peak RSS {z3['peak_mb'] / z0['peak_mb']:.3f}")
    print_table(["stage", "ranks", "model states MiB (measured)", "DeepSpeed's estimate MiB", "measured / estimate",
                 "peak RSS MiB", "s/step", "whole run s"], table)


if __name__ == "__main__":
    main(sys.argv[1:])
