"""What one optimizer step carries besides the model: the global batch's count of scored targets, the host-to-device
copies of its micro-batches, and the sums of its passes that the training record and the divergence guard read.

The count is what makes the step's loss the per-token mean of the whole global batch at any split into micro-batches
and ranks (hypros_lm.training.loop.train_step passes it to the head as ``num_items_in_batch``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on the engine's device: through pinned memory and without waiting where that is a GPU."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def scored_tokens(targets: list[torch.Tensor], *, ignore_index: int, world: int, device: torch.device) -> torch.Tensor:
    """The number of scored targets in the whole global batch (every micro-batch of every rank; ``ignore_index``, the
    head's, marks the others): counted on the host from this rank's batches, summed over ranks by one all-reduce on
    the device (no host synchronisation)."""
    count = torch.tensor(sum(int(np.count_nonzero(y.numpy() != ignore_index)) for y in targets), dtype=torch.float64)
    count = to_device(count, device)
    if world > 1:
        dist.all_reduce(count)
    return count


TOKEN_MEANS = ("loss_log", "accuracy", "entropy", "z_loss")
"""Components of a pass that are means over its scored tokens (with each ``loss_<score>``): weighted by the pass's
token count in the step's record."""


@dataclass
class StepSums:
    """One optimizer step, for its training record and the divergence check, as this rank's sums over its
    micro-batches (on the device): ``loss``, this rank's share of the global batch's per-token loss; the token-mean
    components (``mean_keys``) times each pass's scored tokens, as one vector (``weighted``), and those tokens
    (``n_tokens``); the squared per-component gradient norms (``norm_keys``, ``norms_sq``); the gradient norm where
    DeepSpeed reports none (ZeRO-0); and, on timed (log) steps, the seconds in forward, backward and the optimizer and
    the model-state bytes held while the optimizer steps."""

    loss: torch.Tensor | float = 0.0
    n_tokens: torch.Tensor | float = 0.0
    mean_keys: list[str] = field(default_factory=list)
    weighted: torch.Tensor | float = 0.0
    norm_keys: list[str] = field(default_factory=list)
    norms_sq: torch.Tensor | float = 0.0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("forward", "backward", "optimizer"), 0.0))
    held: dict[str, int] = field(default_factory=dict)
    grad_norm: torch.Tensor | None = None

    def add(self, out) -> None:
        """Add one micro-batch's pass (a [`ScoreOutput`][hypros_lm.scoring.fused.ScoreOutput]): a few operations on
        stacked vectors, not a few per component (this runs at every micro-step)."""
        n = out.n_tokens.double()
        parts = out.components()
        self.mean_keys = [k for k in parts if k in TOKEN_MEANS or k.startswith("loss_")]
        self.norm_keys = [k for k in parts if k.startswith("grad_norm_")]
        self.loss = self.loss + out.loss.detach().double()
        self.n_tokens = self.n_tokens + n
        self.weighted = self.weighted + torch.stack([parts[k] for k in self.mean_keys]).double() * n
        if self.norm_keys:
            self.norms_sq = self.norms_sq + torch.stack([parts[k] for k in self.norm_keys]).double().square()

    def means(self, device: torch.device) -> dict[str, float]:
        """The step's scored tokens, each token-mean component over the global batch and each component's gradient
        norm ‖∂L/∂h‖ over it: this rank's sums added over ranks by one all-reduce (a sync point: log steps only)."""
        vec = torch.cat([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(-1) for v in
                         (self.n_tokens, self.weighted, self.norms_sq if self.norm_keys else [])])
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(vec)
        n, *values = vec.tolist()
        out: dict[str, float] = {"scored_tokens": int(n)}
        out.update({k: v / n if n else float("nan") for k, v in zip(self.mean_keys, values[: len(self.mean_keys)], strict=True)})
        out.update({k: math.sqrt(v) for k, v in zip(self.norm_keys, values[len(self.mean_keys):], strict=True)})
        return out
