"""Naive materialised scoring: the (N, V) logits and probabilities exist in full.

This is the independent reference the fused kernel is tested against (in float64) and the
"naive" baseline of benchmarks/scoring.py (in the input dtype). It follows the definitions
literally — Brier as Σ_v (p_v − 1[v = y])², spherical as 1 − p_y/‖p‖₂ — and lets autograd
derive the gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hypros_lm.scoring.scores import Score, bounded_score


def naive_token_scores(logits: Tensor, targets: Tensor, *, label_smoothing: float = 0.0) -> dict[str, Tensor]:
    """Per-token log, smoothed log, Brier, spherical, entropy and correctness for (N, V) logits.

    targets must be valid ids (callers mask ignored tokens themselves).
    """
    p = torch.softmax(logits, dim=-1)
    onehot = F.one_hot(targets, logits.shape[-1]).to(p.dtype)
    logp = torch.log_softmax(logits, dim=-1)
    log = -(logp * onehot).sum(-1)
    smoothed = (1 - label_smoothing) * log - label_smoothing * logp.mean(-1)
    return {
        "log": log,
        "log_smoothed": smoothed,
        "brier": ((p - onehot) ** 2).sum(-1),
        "spherical": 1 - (p * onehot).sum(-1) / p.norm(dim=-1),
        "entropy": -(p * logp).sum(-1),
        "correct": (logits.argmax(-1) == targets).to(p.dtype),
    }


def naive_linear_score(
    hidden: Tensor, weight: Tensor, targets: Tensor, lam: float, bounded: str | Score = "brier", ignore_index: int = -100,
    *, alpha: float | None = None, label_smoothing: float = 0.0, bias: Tensor | None = None, logit_scale: float = 1.0,
    softcap: float | None = None, z_loss: float = 0.0, dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """Means over non-ignored tokens; ``loss`` is differentiable w.r.t. hidden, weight (and bias);
    ``per_token`` is each token's combined score (0 where ignored).

    Logits: softcap·tanh(logit_scale·(hidden·Wᵀ + bias)/softcap), as the models that use them write it.
    Computed in ``dtype`` (default: hidden's dtype), after casting hidden and weight to it.
    """
    dtype = dtype or hidden.dtype
    hidden = hidden.reshape(-1, hidden.shape[-1]).to(dtype)
    targets = targets.reshape(-1)
    valid = targets != ignore_index
    logits = hidden @ weight.to(dtype).T  # (N, V): the tensor the fused kernel never builds
    if bias is not None:
        logits = logits + bias.to(dtype)
    logits = logits * logit_scale
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    safe = torch.where(valid, targets, 0)
    s = naive_token_scores(logits, safe, label_smoothing=label_smoothing)
    score = bounded_score(bounded, alpha)
    # a reported score by its literal definition above, another family member by its own on the full probabilities
    s["bounded"] = s[score.key] if score.key in s else score.reference(logits, safe).to(logits.dtype)
    mask = valid.to(logits.dtype)
    denom = mask.sum().clamp(min=1)
    mean = {k: (v * mask).sum() / denom for k, v in s.items()}
    combined = (1 - lam) * s["log_smoothed"] + lam * s["bounded"] + z_loss * torch.logsumexp(logits, -1) ** 2
    return {
        "loss": (combined * mask).sum() / denom,
        "per_token": combined * mask,
        "log": mean["log"],
        "brier": mean["brier"],
        "spherical": mean["spherical"],
        "bounded": mean["bounded"],
        "entropy": mean["entropy"],
        "accuracy": mean["correct"],
    }
