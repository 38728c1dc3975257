"""Stop a run that diverged, at the step it did, before its broken weights are evaluated or checkpointed.

A diverged run can still print finite losses (weights at ``inf``, or collapsed to uniform predictions, give
log = ln V exactly), so each step checks three numbers: the loss, the gradient norm and the parameter norm. They
travel as one small vector in one all-reduce, so every rank stops at the same step with the same message (no rank
waits in a collective for one that left), and the step's single host synchronisation is that vector's read-back.
Megatron-LM stops the same way (``check_for_nan_in_loss_and_grad``).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from hypros_lm.errors import Diverged
from hypros_lm.training.engine import is_partitioned


def _local_parameters(model: torch.nn.Module) -> list[Tensor]:
    """This rank's parameters: its own shards under ZeRO-3, the whole tensors otherwise."""
    return [p.ds_tensor if is_partitioned(p) else p for p in model.parameters()]


def _squared_norm(tensors: list[Tensor], device: torch.device) -> Tensor:
    """Σ‖t‖² in fp32 on ``device`` (inf once an entry's square overflows, as the logged parameter norm does)."""
    total = torch.zeros((), device=device)
    by_device: dict[torch.device, list[Tensor]] = {}
    for t in tensors:
        if t.numel():
            by_device.setdefault(t.device, []).append(t.detach())
    for group in by_device.values():
        norms = torch._foreach_norm(group)
        total = total + torch.stack(norms).float().square().sum().to(device)
    return total


def check_step(engine, *, step: int, loss_sum: Tensor, grad_norm: Tensor | float | None, micro_steps: int) -> None:
    """Raise [`Diverged`][hypros_lm.errors.Diverged] on every rank where this step's mean loss (``loss_sum`` over this
    rank's ``micro_steps`` micro-batches), the gradient norm or the parameter norm after the update is not finite."""
    device = engine.device
    norm = torch.as_tensor(0.0 if grad_norm is None else grad_norm, dtype=torch.float32, device=device)
    world = dist.get_world_size()
    health = torch.stack([loss_sum.detach().float().to(device) / (micro_steps * world), norm / world,
                          _squared_norm(_local_parameters(engine.module), device)])
    dist.all_reduce(health)  # a non-finite value on any rank makes the sum non-finite on all
    loss, grad, param_sq = health.tolist()
    bad = {name: value for name, value in (("loss", loss), ("gradient norm", grad),
                                           ("parameter norm", math.sqrt(param_sq) if param_sq >= 0 else param_sq))
           if not math.isfinite(value)}
    if bad:
        said = ", ".join(f"{name} {value}" for name, value in bad.items())
        raise Diverged(f"training diverged at step {step}: {said}; no checkpoint of this step was written. "
                       f"Lower --optim.lr, keep --optim.grad_clip on (e.g. 1.0), lengthen "
                       f"--optim.warmup_steps, then continue with --resume")
