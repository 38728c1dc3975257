"""What an LM head does with final hidden states, for a patched Hugging Face ``lm_head``
(integrations/patch.py): the fused score or the logits (the per-token scores are `token_scores()`)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from hypros_lm.scoring.fused import DEFAULT_SCORING, ScoreOutput, ScoringOptions, fused_linear_score, require
from hypros_lm.scoring.scores import Score

HeadMode = Literal["score", "tokens", "logits"]
"""What a patched head returns: the fused score ([`ScoreOutput`][hypros_lm.scoring.fused.ScoreOutput], training), the per-token scores
([`token_scores()`][hypros_lm.scoring.fused.token_scores], a dict of 1-D tensors, evaluation) or the logits (a tensor)."""


def head_logits(hidden: Tensor, weight: Tensor, *, bias: Tensor | None = None, softcap: float | None = None,
                logit_scale: float = 1.0, columns: Tensor | None = None) -> Tensor:
    """The (B, T, V) logits of the head's transform, or only the given ``columns`` (B, T, len(columns)), e.g. a
    classifier's label words."""
    rows = slice(None) if columns is None else columns.to(weight.device)
    logits = torch.nn.functional.linear(hidden, weight[rows], None if bias is None else bias[rows])
    if logit_scale != 1.0:
        logits = logits * logit_scale
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def score_hidden(
    hidden: Tensor, weight: Tensor, targets: Tensor, lam: float | Tensor = 0.0, *,
    options: ScoringOptions = DEFAULT_SCORING, bias: Tensor | None = None, bounded: str | Score = "brier",
    ignore_index: int = -100, softcap: float | None = None, logit_scale: float = 1.0,
    num_items_in_batch: int | Tensor | None = None, component_grad_norms: bool = False, calibration_bins: int = 0,
    score_columns: Tensor | None = None,
) -> ScoreOutput:
    """The fused ``(1 − λ)·log + λ·bounded`` score of (B, T, d) hidden states with a (V, d) head weight and the
    head's ``options``; ``bias``, ``softcap`` and ``logit_scale`` are the model's own head's. With
    ``score_columns`` (a classification task's label words) over those columns only, a softmax over the label
    set, the targets being token ids among them."""
    if score_columns is not None:
        weight, targets, bias = _restrict(weight, targets, bias, score_columns, ignore_index)
    return fused_linear_score(
        hidden, weight, targets, lam=lam, bounded=bounded, bias=bias, ignore_index=ignore_index,
        num_items_in_batch=num_items_in_batch, options=options, softcap=softcap, logit_scale=logit_scale,
        component_grad_norms=component_grad_norms, calibration_bins=calibration_bins,
    )


def _restrict(weight: Tensor, targets: Tensor, bias: Tensor | None, columns: Tensor,
              ignore_index: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """The ``columns`` rows of the weight (and bias), and the targets as positions among them."""
    columns = columns.to(targets.device)
    position = torch.full((weight.shape[0],), -1, dtype=torch.long, device=targets.device)
    position[columns] = torch.arange(columns.numel(), device=targets.device)
    scored = targets != ignore_index
    mapped = torch.where(scored, position[targets.clamp(min=0)], targets)
    require(~(scored & (mapped < 0)).any(), lambda: "a target token is not among the head's score_columns (the label "
            "words)")
    return weight[columns], mapped, None if bias is None else bias[columns]
