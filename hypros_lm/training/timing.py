"""An interleaved step timing: log-loss steps and the method's steps alternated on one engine in one process, so
that drift in the machine's speed (other work sharing the cores) hits both alike. Run-level step times of
separate runs cannot show a 3 % difference on a shared machine; this can. The study report judges C1 on it."""

from __future__ import annotations

import time
from pathlib import Path
from statistics import median
from typing import Any

import torch

from hypros_lm.config import RunSettings
from hypros_lm.errors import InvalidValue
from hypros_lm.training.engine import init_distributed, release_shared_memory_buffers
from hypros_lm.training.loop import build_run, check_run, train_step

WARMUP = 2  # steps of each objective before measuring


def interleaved_timing(settings: RunSettings, *, steps: int, out: Path) -> dict[str, Any]:
    """Seconds per optimizer step of log-loss (λ = 0) and of the run's objective at mid-run λ, alternated
    ``steps`` times each after a warm-up, on the run's own model, data, DeepSpeed config and batch; the medians
    and their ratio. ``out`` is a scratch run folder (the run's tokenizer and settings are written there)."""
    rank, _, world = init_distributed()
    if world != 1:
        raise InvalidValue(f"an interleaved timing runs in one process, not {world} ranks: start it without a launcher")
    run = build_run(settings, check_run(settings, out=out), rank, world)
    lam = float(run.objective.schedule(settings.train.max_steps // 2))
    times: dict[str, list[float]] = {"log": [], "method": []}
    for i in range(2 * (steps + WARMUP)):
        name = "log" if i % 2 == 0 else "method"
        start = time.perf_counter()
        train_step(run, i + 1, 0.0 if name == "log" else lam, False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= 2 * WARMUP:
            times[name].append(time.perf_counter() - start)
    release_shared_memory_buffers(rank)
    log_s, method_s = median(times["log"]), median(times["method"])
    return {"objective": settings.loss.name, "lambda": lam, "steps": steps, "log_s": log_s, "method_s": method_s,
            "ratio": method_s / log_s, "log_times": times["log"], "method_times": times["method"]}
