"""Stop a run that diverged, naming the step it did, before its broken weights are evaluated or checkpointed.

A diverged run can still print finite losses (weights at ``inf``, or collapsed to uniform predictions, give
log = ln V exactly), so each step looks at three numbers: the loss, the gradient norm and the parameter norm. Each
step only *records* them on the device, with the first step where one was not finite (no host synchronisation, no
collective: a step that logs nothing waits on nothing);
[`DivergenceGuard.check()`][hypros_lm.training.divergence.DivergenceGuard.check] reads the record where the loop
reads the device anyway (log steps) and before every evaluation and checkpoint:
two small all-reduces, so every rank stops at the same point with the same message (no rank waits in a collective
for one that left). Megatron-LM stops the same way (``check_for_nan_in_loss_and_grad``), at every step.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from hypros_lm.errors import Diverged
from hypros_lm.training.engine import is_partitioned

_NONE = float(2**62)
"""The first-bad-step record while every step was finite (above any step, exact in float64)."""


def local_parameter_shards(model: torch.nn.Module) -> list[Tensor]:
    """The parameter values this rank counts once in a norm over ranks: its own ZeRO-3 shards (without the last one's
    padding), the parameters ZeRO-3 keeps whole on every rank on rank 0 only, and whole tensors otherwise (one
    replica: ranks divide the all-reduced sum by the world size)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    out = []
    for p in model.parameters():
        if not is_partitioned(p):
            out.append(p.detach())
        elif p.ds_persist:
            if rank == 0:
                out.append(p.detach())
        else:
            shard = p.ds_tensor
            valid = max(0, min(shard.ds_numel, p.ds_numel - rank * shard.ds_numel))
            out.append(shard.detach().narrow(0, 0, valid))
    return out


def squared_norm(tensors: list[Tensor], device: torch.device) -> Tensor:
    """Σ‖t‖² in fp32 on ``device`` (inf once an entry's square overflows, as the logged parameter norm does)."""
    total = torch.zeros((), device=device)
    by_device: dict[torch.device, list[Tensor]] = {}
    for t in tensors:
        if t.numel():
            by_device.setdefault(t.device, []).append(t)
    for group in by_device.values():
        norms = torch._foreach_norm(group)
        total = total + torch.stack(norms).float().square().sum().to(device)
    return total


class DivergenceGuard:
    """The health of each optimizer step, kept on the device: the last step's (loss, gradient norm, this rank's
    Σθ²) and those of the first step where any was not finite."""

    def __init__(self, engine, *, partitioned: bool):
        self.engine, self.device = engine, engine.device
        self.replicas = 1 if partitioned else dist.get_world_size()  # whole parameters: every rank adds its copy
        self.last = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.first_bad = torch.full((), _NONE, dtype=torch.float64, device=self.device)
        self.first_values = torch.zeros(3, dtype=torch.float64, device=self.device)

    def observe(self, *, step: int, loss: Tensor, grad_norm: Tensor | float | None) -> None:
        """Record a finished step: ``loss`` is this rank's share of the step's mean loss. Device work only."""
        norm = torch.as_tensor(0.0 if grad_norm is None else grad_norm, dtype=torch.float64, device=self.device)
        param_sq = squared_norm(local_parameter_shards(self.engine.module), self.device)
        self.last = torch.stack([loss.detach().double().to(self.device), norm, param_sq.double()])
        newly = (~torch.isfinite(self.last).all()) & (self.first_bad == _NONE)
        self.first_bad = torch.where(newly, torch.tensor(float(step), dtype=torch.float64, device=self.device),
                                     self.first_bad)
        self.first_values = torch.where(newly, self.last, self.first_values)

    def check(self) -> dict[str, float]:
        """Raise [`Diverged`][hypros_lm.errors.Diverged] on every rank if any rank recorded a non-finite step, naming
        the first; else return the last step's global loss, gradient norm and parameter norm (for the record)."""
        first = self.first_bad.clone()
        if dist.get_world_size() > 1:
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        reporting = (self.first_bad == first) & (first < _NONE)  # the ranks that saw the first bad step: its values
        values = torch.where(reporting, self.first_values, self.last)
        if dist.get_world_size() > 1:
            dist.all_reduce(values)
        loss, grad, param_sq, step = torch.cat([values, first.view(1)]).tolist()  # the one read of the device
        grad /= dist.get_world_size()  # every rank holds the same (global) gradient norm
        param_norm = math.sqrt(param_sq / self.replicas) if param_sq >= 0 else param_sq
        if step < _NONE:
            said = ", ".join(f"{name} {value}" for name, value in
                             (("loss", loss), ("gradient norm", grad), ("parameter norm", param_norm))
                             if not math.isfinite(value))
            raise Diverged(f"training diverged at step {int(step)}: {said}; no checkpoint of this or a later step was "
                           f"written. Lower --optim.lr, keep --optim.grad_clip on (e.g. 1.0), lengthen "
                           f"--optim.warmup_steps, then continue with --resume")
        return {"loss": loss, "grad_norm": grad, "param_norm": param_norm}
