"""A study's plan before it runs (``launch/study.py FILE --plan``): each run's model, parameters, tokens, training
FLOPs and GPU-hours on a named GPU at a stated MFU, the total against a budget, and whether the design can identify
a scaling law under the project's rule (studies/scaling.py: at least MIN_SIZES sizes over at least MIN_DECADES
decades, and MIN_PAIRS seeds of every compared objective at every size). Nothing is trained."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from hypros_lm.errors import InvalidValue
from hypros_lm.models import build_model, flops_per_token
from hypros_lm.studies.scaling import MIN_SIZES
from hypros_lm.studies.spec import RunSpec, Study
from hypros_lm.studies.stats import MIN_PAIRS
from hypros_lm.training.telemetry import PEAK_TFLOPS

MIN_DECADES = 1.5
PROPOSAL_GPU_HOURS = 2000
"""The HyProS proposal's compute budget, in A100-hours."""


@dataclass(frozen=True)
class PlannedRun:
    name: str
    model: str
    params: int
    tokens: int
    flops: float
    gpu_hours: float


def planned(study: Study, runs: list[RunSpec], *, gpu: str, mfu: float) -> list[PlannedRun]:
    """Each run's size and cost: FLOPs = FLOPs per token (head and attention counted) × the tokens it trains on."""
    if gpu not in PEAK_TFLOPS:
        raise InvalidValue(f"--gpu {gpu!r}: choose one of {list(PEAK_TFLOPS)}")
    if not 0 < mfu <= 1:
        raise InvalidValue(f"--mfu {mfu}: give the model-FLOPs utilisation expected, in (0, 1] (e.g. 0.4)")
    out, sized = [], {}
    for run in runs:
        s = run.settings
        if s.model.name not in sized:
            with torch.device("meta"):
                model = build_model(replace(s.model, activation_checkpointing=False), s.data.vocab_size, attention="sdpa")
            sized[s.model.name] = (model.num_parameters(), flops_per_token(model, s.data.seq_len))
        params, per_token = sized[s.model.name]
        tokens = s.train.max_steps * s.train.micro_batch_size * s.train.grad_accum * s.data.seq_len * study.ranks
        peak = PEAK_TFLOPS[gpu]["bf16" if s.train.precision in ("bf16", "fp16") else "fp32"] * 1e12
        flops = float(per_token) * tokens
        out.append(PlannedRun(run.name, run.model, params, tokens, flops, flops / (peak * mfu) / 3600))
    return out


def why_no_law(study: Study, plan: list[PlannedRun]) -> str | None:
    """The first rule of the project's that the design breaks (in words), or None where it can identify a law."""
    sizes = sorted({p.params for p in plan})
    if len(sizes) < MIN_SIZES:
        return f"{len(sizes)} sizes; a law with intervals needs at least {MIN_SIZES}"
    decades = math.log10(sizes[-1] / sizes[0])
    if decades < MIN_DECADES:
        return f"the sizes span {decades:.2f} decades; a law needs at least {MIN_DECADES}"
    compared = {study.baselines.method, study.baselines.log, study.baselines.bounded} & set(study.variations)
    for model in study.models:
        seeds = study.scaling.seeds.get(model, study.seeds) if study.scaling else study.seeds
        if len(compared) > 1 and len(seeds) < MIN_PAIRS:
            return f"{model} has {len(seeds)} seeds; a test at a size needs at least {MIN_PAIRS}"
    return None


def plan_lines(study: Study, plan: list[PlannedRun], *, gpu: str, mfu: float) -> list[str]:
    lines = [f"{'run':<28} {'model':>8} {'parameters':>14} {'tokens':>16} {'FLOPs':>10} {'GPU-hours':>10}"]
    lines += [f"{p.name:<28} {p.model:>8} {p.params:>14,} {p.tokens:>16,} {p.flops:>10.3g} {p.gpu_hours:>10.1f}"
              for p in plan]
    total = sum(p.gpu_hours for p in plan)
    sizes = sorted({p.params for p in plan})
    budget = (("within" if total <= PROPOSAL_GPU_HOURS else "over") + f" the HyProS proposal's {PROPOSAL_GPU_HOURS:,} "
              "A100-hours" if gpu == "A100" else f"the proposal's budget is {PROPOSAL_GPU_HOURS:,} A100-hours: plan "
              "with --gpu A100 to compare")
    lines += [f"total: {len(plan)} runs, {sum(p.flops for p in plan):.3g} FLOPs, {total:,.0f} GPU-hours on {gpu} at "
              f"MFU {mfu:g} ({budget})",
              f"sizes: {len(sizes)} ({sizes[0]:,} to {sizes[-1]:,} parameters, "
              f"{math.log10(sizes[-1] / sizes[0]):.2f} decades)"]
    return lines
