"""Telemetry: metrics.jsonl (always), wandb (optional), and a concise console line. Rank 0 only."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch


class NullLogger:
    def log(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlLogger(NullLogger):
    """One JSON object per line, flushed at once so a crash loses nothing already logged."""

    def __init__(self, path: Path, *, keep_until_step: int | None = None):
        if keep_until_step is not None and path.exists():  # resumed: drop records past the checkpoint
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= keep_until_step]
            path.write_text("".join(line + "\n" for line in kept))
        self._f = open(path, "a")

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class WandbLogger(NullLogger):
    def __init__(self, *, mode: str, project: str, name: str | None, out: Path, config: dict[str, Any]):
        try:
            import wandb
        except ImportError as err:
            raise ImportError("telemetry.wandb needs the wandb package: pip install wandb, or set telemetry.wandb=disabled") from err
        self._wandb = wandb
        self._run = wandb.init(mode=mode, project=project, name=name, dir=str(out), config=config, resume="allow")

    def log(self, record: dict[str, Any]) -> None:
        self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self) -> None:
        self._run.finish()


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def console_line(record: dict[str, Any], max_steps: int, elapsed: float, start_step: int) -> str:
    step = record["step"]
    done = max(1, step - start_step)
    left = elapsed / done * (max_steps - step)
    parts = [
        f"step {step:>{len(str(max_steps))}}/{max_steps}",
        f"loss {record['loss']:.4f}",
        f"log {record['loss_log']:.3f} brier {record['loss_brier']:.4f} sph {record['loss_spherical']:.4f}",
        f"λ {record['lambda']:.3f}",
        f"lr {record['lr']:.2e}",
        f"{record['tokens_per_s'] / 1e3:.1f}k tok/s",
        f"{_fmt(elapsed)} elapsed, {_fmt(left)} left",
    ]
    return " | ".join(parts)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Clock:
    """Wall-clock since start, continued across resumes via the saved elapsed seconds."""

    def __init__(self, already: float = 0.0):
        self._start = time.perf_counter() - already

    def elapsed(self) -> float:
        return time.perf_counter() - self._start


def make_loggers(settings, out: Path, *, resumed_step: int | None, rank: int) -> list:
    if rank != 0:
        return [NullLogger()]
    loggers: list = [JsonlLogger(out / "metrics.jsonl", keep_until_step=resumed_step)]
    mode = os.environ.get("WANDB_MODE", settings.telemetry.wandb)
    if mode != "disabled":
        loggers.append(WandbLogger(mode=mode, project=settings.telemetry.wandb_project,
                                   name=settings.telemetry.run_name or out.name, out=out, config=settings.to_dict()))
    return loggers
