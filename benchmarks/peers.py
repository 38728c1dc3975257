"""A training step of the stack against the plain PyTorch loop a user would write instead, interleaved in one process.

    python benchmarks/peers.py                          # micro and tiny, 50 measured steps each
    python benchmarks/peers.py --rungs micro --steps 6

Every variant trains the rung's transformers Llama model (same config, same initial weights) on the same real
WikiText-2 batches with AdamW and gradient clipping, fp32 on CPU; each round runs one step of every variant, and a
variant's tokens/s is its tokens over its total time (the mean step, so that the stack's periodic logging counts:
the stack's warm-up steps are its steps 49 and 50, which compile every path once, and the default 50 measured steps,
51–100, hold five log steps and one of component gradient norms):

    plain-ce      LlamaForCausalLM, its logits and F.cross_entropy: the nanoGPT-style loop
    plain-hypros  the same loop and model, patched with patch_causal_lm (the fused HyProS head, λ = 0.3)
    stack-model   the same loop over the stack's model (hypros_lm.models.build_model) instead
    stack-engine  the stack's model in its DeepSpeed engine (ZeRO-0), forward / backward / step on ready batches
    stack         hypros_lm.training.loop.run_step: the stack's whole step (λ and lr schedules, the data, the engine,
                  telemetry: the training record every log_every steps, component gradient norms every
                  component_grad_every), on a scratch run folder

The breakdown reads the stack's extra time over plain-hypros off the differences: the model and head
(stack-model − plain-hypros), the engine (stack-engine − stack-model), the data, schedules and telemetry
(stack − stack-engine).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mdtable import print_table

LAMBDA = 0.3
VARIANTS = ("plain-ce", "plain-hypros", "stack-model", "stack-engine", "stack")


def _plain_step(model, optimizer, loss_of, clip: float):
    import torch

    def step(x, y):
        loss = loss_of(model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _quiet(fn, *args):
    """Run ``fn`` with its console lines kept from the benchmark's output (they are still formatted and written)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _variants(rung: str, out: Path, *, batch: int, seq_len: int):
    """name → step(x, y), each variant built from the same settings and initial weights."""
    import torch
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    from hypros_lm.config import settings_from_dict
    from hypros_lm.integrations.transformers import patch_causal_lm
    from hypros_lm.models import HFCausalLM
    from hypros_lm.training.engine import build_engine, load_ds_config
    from hypros_lm.training.loop import Progress, build_run, check_run, run_step
    from hypros_lm.training.telemetry import Clock, make_loggers

    settings = settings_from_dict({
        "model": {"name": rung}, "data": {"seq_len": seq_len},
        "loss": {"name": "hypros-fixed", "lam_fixed": LAMBDA},
        "train": {"out": str(out), "micro_batch_size": batch, "ds_config": "zero0", "max_steps": 10**6,
                  "eval_every": 0, "save_every": 0},
        "telemetry": {"wandb": "disabled"},
    })
    run = build_run(settings, check_run(settings), 0, 1)
    o = settings.optim
    config = run.engine.module.config
    weights = {k: v.detach().clone() for k, v in run.engine.module.lm.state_dict().items()}

    def adamw(model):
        return torch.optim.AdamW(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)

    def hf_model():
        model = LlamaForCausalLM(config)
        model.load_state_dict(weights)
        return model.to(run.engine.device)

    plain_ce, plain_hypros = hf_model(), patch_causal_lm(hf_model(), lam=LAMBDA)
    stack_model, engine_model = HFCausalLM(hf_model()), HFCausalLM(hf_model())
    engine = build_engine(engine_model, load_ds_config(settings.train, o, 1, hidden_size=config.hidden_size), o)

    def engine_step(x, y):
        out_ = engine(x, y, LAMBDA, bounded="brier")
        engine.backward(out_.loss)
        engine.step()

    loggers = make_loggers(settings, out, resumed_step=None, rank=0)
    first = settings.train.component_grad_every - 1  # the warm-up rounds run the periodic steps' paths once
    progress = Progress(Clock(), first - 1, (time.perf_counter(), first - 1))
    counter = iter(range(first, 10**9))
    steps = {
        "plain-ce": _plain_step(plain_ce, adamw(plain_ce), lambda m, x, y: F.cross_entropy(
            m(input_ids=x).logits.flatten(0, 1), y.flatten()), o.grad_clip),
        "plain-hypros": _plain_step(plain_hypros, adamw(plain_hypros), lambda m, x, y: m(
            input_ids=x, shift_labels=y).loss, o.grad_clip),
        "stack-model": _plain_step(stack_model, adamw(stack_model), lambda m, x, y: m(x, y, LAMBDA).loss, o.grad_clip),
        "stack-engine": engine_step,
        "stack": lambda x, y: _quiet(run_step, run, loggers, next(counter), progress),
    }
    return steps, run


def measure(rung: str, *, steps: int, batch: int, seq_len: int) -> dict[str, float]:
    """Mean seconds per step of every variant, one step of each per round, after two warm-up rounds."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        variants, run = _variants(rung, Path(tmp) / "run", batch=batch, seq_len=seq_len)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for i in range(steps + 2):
            x, y = (t.to(run.engine.device) for t in run.data.train.batch(run.order.indices(i * batch, batch)))
            for name, step in variants.items():
                start = time.perf_counter()
                step(x, y)
                if x.is_cuda:
                    torch.cuda.synchronize()
                if i >= 2:
                    times[name].append(time.perf_counter() - start)
    if os.environ.get("PEERS_DEBUG"):
        print({name: [round(x * 1e3) for x in t] for name, t in times.items()})
    return {name: statistics.fmean(t) for name, t in times.items()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rungs", nargs="+", default=["micro", "tiny"])
    parser.add_argument("--steps", type=int, default=50, help="measured steps per variant (after 2 warm-up)")
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import platform

    import torch

    from hypros_lm.training.engine import init_distributed

    init_distributed()
    tokens = args.micro_batch_size * args.seq_len
    where = "CUDA fp32" if torch.cuda.is_available() else f"CPU fp32 ({torch.get_num_threads()} threads)"
    print(f"# benchmarks/peers.py: {args.steps} interleaved steps per variant (mean), {tokens} tokens per step, "
          f"{where}, torch {torch.__version__}, {platform.machine()}", flush=True)
    table = []
    for rung in args.rungs:
        t = measure(rung, steps=args.steps, batch=args.micro_batch_size, seq_len=args.seq_len)
        print(f"{rung}: " + ", ".join(f"{k} {v * 1e3:.1f} ms ({tokens / v:,.0f} tok/s)" for k, v in t.items()), flush=True)
        base = t["plain-hypros"]
        table.append([rung, *(f"{tokens / t[name]:,.0f}" for name in VARIANTS), f"{base / t['stack']:.3f}",
                      f"{(t['stack-model'] - base) * 1e3:+.1f}", f"{(t['stack-engine'] - t['stack-model']) * 1e3:+.1f}",
                      f"{(t['stack'] - t['stack-engine']) * 1e3:+.1f}"])
    print_table(["rung", *(f"{name} tok/s" for name in VARIANTS), "stack / plain-hypros (goal ≥ 0.97)",
                 "model and head ms", "engine ms", "data, schedules, telemetry ms"], table)


if __name__ == "__main__":
    main(sys.argv[1:])
