"""Where evaluation runs: on CUDA when there is one, in the run's precision, and it says what it chose."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hypros_lm.errors import InvalidValue

DEVICES = "auto, cpu, cuda or cuda:N"


def choose_device(requested: str = "auto", *, run_precision: str = "fp32", precision: str = "auto",
                  log: Callable[[str], None] = print) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) for evaluation. ``auto`` takes CUDA when available and falls back to the CPU, saying
    so; precision ``auto`` is the run's (bf16 runs evaluate in bf16 on CUDA; the CPU evaluates in fp32)."""
    cuda = torch.cuda.is_available()
    if requested == "auto":
        device = torch.device("cuda" if cuda else "cpu")
        why = "" if cuda else " (CUDA is not available; --device cuda to require it)"
    elif requested == "cpu" or requested.startswith("cuda"):
        if requested.startswith("cuda") and not cuda:
            raise InvalidValue(f"--device {requested}: CUDA is not available here; use --device cpu or auto")
        device, why = torch.device(requested), ""
    else:
        raise InvalidValue(f"--device {requested!r}; use {DEVICES}")
    if precision not in ("auto", "fp32", "bf16"):
        raise InvalidValue(f"--precision {precision!r}; use auto, fp32 or bf16")
    wanted = run_precision if precision == "auto" else precision
    dtype = torch.bfloat16 if wanted == "bf16" and (device.type == "cuda" or precision == "bf16") else torch.float32
    name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    log(f"device: {device}{name}, {str(dtype).removeprefix('torch.')}{why}")
    return device, dtype
