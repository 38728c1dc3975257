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


# Dense (no sparsity) peak TFLOP/s of common GPUs from NVIDIA's data sheets: bf16 tensor cores, and
# fp32 without TF32. Matched against torch.cuda.get_device_name(), most specific name first.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756.0, "fp32": 51.2},
    "H100 NVL": {"bf16": 835.0, "fp32": 60.0},
    "H100": {"bf16": 989.4, "fp32": 66.9},  # SXM ("NVIDIA H100 80GB HBM3")
    "H200": {"bf16": 989.4, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.1, "fp32": 91.6},
    "L4": {"bf16": 121.0, "fp32": 30.3},
    "A10": {"bf16": 125.0, "fp32": 31.2},
    "V100": {"fp32": 15.7},  # no bf16
}


def device_peak_tflops(precision: str, override: float | None = None) -> tuple[float | None, str]:
    """(peak TFLOP/s per device for MFU, where it came from). On CPU, or an unlisted GPU, only an
    explicit ``telemetry.peak_tflops`` gives one: there is no honest table for CPUs."""
    if override is not None:
        return override, "telemetry.peak_tflops"
    if not torch.cuda.is_available():
        return None, "none on CPU (set telemetry.peak_tflops for MFU)"
    name = torch.cuda.get_device_name()
    for key, peaks in PEAK_TFLOPS.items():
        if key in name and precision in peaks:
            return peaks[precision], f"{key} {precision} table entry"
    return None, f"{name} not in the peak table (set telemetry.peak_tflops for MFU)"


class EnergyMeter:
    """This rank's GPU energy from NVML's cumulative counter (Volta and later), when pynvml imports."""

    def __init__(self) -> None:
        self._nvml, self._handle = None, None
        if not torch.cuda.is_available():
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self._nvml = pynvml
        except Exception:  # no pynvml, or a GPU/driver without the counter: no energy figures
            self._nvml = None
        self._last: tuple[float, int] | None = None

    def joules_per_step(self, step: int) -> float | None:
        """Mean energy per step since the previous call (None on the first call or without NVML)."""
        if self._nvml is None:
            return None
        millijoules = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        previous, self._last = self._last, (millijoules, step)
        if previous is None or step == previous[1]:
            return None
        return (millijoules - previous[0]) / 1000 / (step - previous[1])


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
        f"{_count(record['tokens_per_s'])} tok/s",
        f"{record['tflops_per_device']:.3g} TFLOP/s" + (f" (MFU {record['mfu']:.1%})" if record.get("mfu") is not None else ""),
        f"mem {record['peak_mem_mb'] / 1024:.2f} GiB",
        f"{_fmt(elapsed)} elapsed, {_fmt(left)} left",
    ]
    return " | ".join(parts)


def _count(value: float) -> str:
    return f"{value / 1e3:.1f}k" if value >= 1000 else f"{value:.0f}"


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
