"""Telemetry: metrics.jsonl (always), wandb (optional), a concise console line (rank 0), and what the records
hold beyond the losses: the parameter norm, model-state bytes counted from the engine's tensors, peak
memory, device peak TFLOP/s for MFU, energy, and the run's environment."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from hypros_lm.errors import MissingPackage
from hypros_lm.runs import RunFolder
from hypros_lm.scoring.scores import score_keys
from hypros_lm.training.engine import is_partitioned


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
            raise MissingPackage("telemetry.wandb needs the wandb package: pip install wandb, or set "
                                 "telemetry.wandb=disabled") from err
        self._wandb = wandb
        self._run = wandb.init(mode=mode, project=project, name=name, dir=str(out), config=config, resume="allow")

    def log(self, record: dict[str, Any]) -> None:
        self._wandb.log(namespaced(record), step=record["step"])

    def close(self) -> None:
        self._run.finish()


EFFICIENCY_KEYS = ("tokens_per_s", "flops_per_token", "tflops_per_device", "mfu", "peak_mem_mb", "model_state_mb",
                   "model_state_params_mb", "energy_j_per_step", "param_norm")
"""The training record's throughput, memory and energy keys (and ``time_*_s``): ``eff/`` in a dashboard."""


def namespaced(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics.jsonl record as a dashboard's keys: ``train/loss`` and ``val/loss`` apart (one wandb step holds
    both at an evaluation, and flat keys would overwrite each other), ``eff/…`` for throughput and memory,
    ``lm_eval/…`` as they are; the step and the split are the dashboard's own axis and group, not metrics."""
    split = record.get("split", "train")
    out = {}
    for key, value in record.items():
        if key in ("step", "split"):
            continue
        if key.startswith("lm_eval/"):
            out[key] = value
        elif split == "train" and (key in EFFICIENCY_KEYS or (key.startswith("time_") and key.endswith("_s"))):
            out[f"eff/{key}"] = value
        else:
            out[f"{split}/{key}"] = value
    return out


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
        f"log {record['loss_log']:.3f} " + " ".join(f"{k} {record['loss_' + k]:.4f}" for k in score_keys(record)),
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


def wandb_mode(setting: str | None) -> str:
    """The run's wandb mode: the setting where given (YAML or command line), else WANDB_MODE, else offline."""
    return setting or os.environ.get("WANDB_MODE") or "offline"


def make_loggers(settings, out: Path, *, resumed_step: int | None, rank: int) -> list:
    if rank != 0:
        return [NullLogger()]
    loggers: list = [JsonlLogger(RunFolder(out).metrics_file, keep_until_step=resumed_step)]
    mode = wandb_mode(settings.telemetry.wandb)
    if mode != "disabled":
        loggers.append(WandbLogger(mode=mode, project=settings.telemetry.wandb_project,
                                   name=settings.telemetry.run_name or out.name, out=out, config=settings.to_dict()))
    return loggers


def model_state_bytes(engine) -> dict[str, int]:
    """Bytes of model states this rank holds, counted from the tensors themselves (on CPU the resident
    memory of a process rarely shrinks when tensors are freed, so RSS cannot tell this).

    ``params``: the model's parameters as held (a ZeRO-3 shard, or the whole tensor); ``total``: every
    distinct tensor storage reachable from the module and the DeepSpeed optimizer (fp32 master weights,
    gradient partitions and buffers, Adam moments, the reduce/all-gather buckets), each storage counted
    once however many views point into it. Tensors gathered only for a forward are not held and not counted.
    """
    seen: dict[int, int] = {}

    def add(t: torch.Tensor) -> None:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()

    for p in engine.module.parameters():
        add(p.ds_tensor if is_partitioned(p) else p.data)
    params = sum(seen.values())
    for p in engine.module.parameters():
        if p.grad is not None:
            add(p.grad)
    _walk_tensors(engine.optimizer, add)
    seen.pop(0, None)  # empty tensors (released ZeRO-3 parameters) have no storage
    return {"params": params, "total": sum(seen.values())}


@contextlib.contextmanager
def counting_model_states(engine, into: dict[str, int]):
    """Count [`model_state_bytes()`][hypros_lm.training.telemetry.model_state_bytes] into ``into`` at the moment the
    innermost torch optimizer steps: only then are all model states live at once (DeepSpeed makes the fp32 gradients
    of its master weights just before that step and frees them after), which is what its estimators assume. The
    largest count wins when ZeRO-3 steps its sub-groups one by one."""

    def count(*_args) -> None:
        held = model_state_bytes(engine)
        for key, value in held.items():
            into[key] = max(into.get(key, 0), value)

    inner = engine.optimizer
    while not isinstance(inner, torch.optim.Optimizer) and hasattr(inner, "optimizer"):
        inner = inner.optimizer
    handle = inner.register_step_pre_hook(count)
    try:
        yield into
    finally:
        handle.remove()


def _walk_tensors(root: Any, add: Callable[[torch.Tensor], None], *, max_depth: int = 8) -> None:
    """Find the tensors an optimizer object holds: its attributes, lists, dicts and the wrapped optimizer's
    state. Breadth first, so every object is reached by its shortest path before the depth limit."""
    queue, visited = collections.deque([(root, 0)]), {id(root)}
    while queue:
        obj, depth = queue.popleft()
        if isinstance(obj, torch.Tensor):
            for held in (obj, getattr(obj, "ds_tensor", None), obj.grad):
                if held is not None:
                    add(held)
            continue
        if isinstance(obj, torch.nn.Module) or depth == max_depth:
            continue
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            children = list(obj)
        elif isinstance(obj, torch.optim.Optimizer) or type(obj).__module__.startswith("deepspeed.runtime"):
            children = list(vars(obj).values())
        else:
            continue
        for child in children:
            if id(child) not in visited:
                visited.add(id(child))
                queue.append((child, depth + 1))


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def environment(world: int, sources: dict[str, str]) -> dict[str, Any]:
    """Versions and the code's commit, saved beside each run (environment.json)."""
    import deepspeed
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"git_commit": commit, "python": platform.python_version(), "torch": torch.__version__,
            "deepspeed": deepspeed.__version__, "transformers": transformers.__version__,
            "world_size": world, "cuda": torch.cuda.is_available(), "data": sources}


class Stopwatch:
    """Seconds between laps, with the device synchronised first (only when enabled)."""

    def __init__(self, enabled: bool):
        self.enabled, self._last = enabled, 0.0

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        if self.enabled:
            self._last = self._now()

    def lap(self) -> float:
        if not self.enabled:
            return 0.0
        now = self._now()
        elapsed, self._last = now - self._last, now
        return elapsed


def full_grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """‖∇θ‖₂ of a model holding whole gradients (ZeRO-0, where DeepSpeed reports none): a BLAS dot per tensor, which
    reads each gradient once with no temporary (1.1 ms a step at the micro rung, against 2.2 for a squared copy of
    each; benchmarks/peers.py) and sums more exactly than a foreach norm (3e-7 against 2e-6 from float64)."""
    flat = [p.grad.detach().reshape(-1) for p in model.parameters() if p.grad is not None]
    flat = [g if g.dtype in (torch.float32, torch.float64) else g.float() for g in flat]
    return torch.stack([torch.dot(g, g).float() for g in flat]).sum().sqrt() if flat else torch.zeros(())


def efficiency_record(engine, *, seconds: dict[str, float], held: dict[str, int], step: int, tokens_per_s: float,
                      flops_per_token: int, peak_tflops: float | None, world: int, energy: EnergyMeter,
                      param_norm: float) -> dict[str, Any]:
    """What users compare runs and hardware by: model FLOPs, TFLOP/s and MFU per device, the time split
    of this step (rank 0's), memory (the largest rank's; model states counted while gradients, weights
    and optimizer states are all live, as the optimizer steps), the parameter norm (the divergence guard's, measured
    once a step), energy per step (CUDA)."""
    tflops = flops_per_token * tokens_per_s / world / 1e12
    held_mb = [held.get(k, 0) / 2**20 for k in ("total", "params")]
    worst = torch.tensor([peak_memory_mb(), *held_mb], device=engine.device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    peak_mem, state_mb, params_mb = worst.tolist()
    return {
        "flops_per_token": flops_per_token,
        "tflops_per_device": tflops,
        "mfu": tflops / peak_tflops if peak_tflops else None,
        **{f"time_{k}_s": v for k, v in seconds.items()},
        "param_norm": param_norm,
        "peak_mem_mb": peak_mem,
        "model_state_mb": state_mb,
        "model_state_params_mb": params_mb,
        "energy_j_per_step": energy.joules_per_step(step),
    }


def print_record(record: dict[str, Any], *, max_steps: int, elapsed: float, start_step: int,
                 extra_keys: tuple[str, ...] = ()) -> None:
    """The console line of a training, validation or lm-eval record (rank 0 calls it)."""
    if record.get("split") == "lm_eval":
        shown = {k.removeprefix("lm_eval/"): v for k, v in record.items() if k.startswith("lm_eval/") and "_stderr" not in k}
        print(f"  lm-eval @ {record['step']}: " + " | ".join(f"{k} {v:.4f}" for k, v in shown.items()), flush=True)
    elif record.get("split") == "val":
        print(f"  val @ {record['step']}: loss {record['loss']:.4f} | log {record['loss_log']:.4f} "
              f"(ppl {record['perplexity']:.1f}) | "
              + "".join(f"{k} {record['loss_' + k]:.4f} | " for k in score_keys(record))
              + f"acc {record['accuracy']:.3f} | ECE {record['ece_10']:.4f}"
              + "".join(f" | {k} {record[k]:.4f}" for k in extra_keys if k in record), flush=True)
    else:
        print(console_line(record, max_steps, elapsed, start_step), flush=True)
