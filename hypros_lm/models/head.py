"""The scoring head: owns the LM-head weight and scores hidden states in its own forward.

Calling the fused function inside this module's ``forward`` matters under DeepSpeed ZeRO-3:
the engine gathers a module's partitioned parameters only around that module's forward, so a
weight read from outside would be an empty shard.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hypros_lm.scoring import ScoreOutput, fused_linear_score, token_scores


class ScoringHead(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        *,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        chunk_size: int | None = None,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.chunk_size = chunk_size
        nn.init.normal_(self.weight, std=0.02)

    def forward(
        self,
        hidden: Tensor,
        targets: Tensor | None = None,
        lam: float | Tensor = 0.0,
        *,
        bounded: str = "brier",
        component_grad_norms: bool = False,
        per_token: bool = False,
    ) -> ScoreOutput | dict[str, Tensor] | Tensor:
        """Score (B, T, d) hidden states against (B, T) targets.

        Without targets: the (B, T, V) logits (generation, export checks). With ``per_token``: the
        per-token scores of :func:`token_scores` over the non-ignored tokens (evaluation).
        """
        if targets is None:
            return hidden @ self.weight.T
        if per_token:
            return token_scores(hidden, self.weight, targets, self.ignore_index, self.chunk_size)
        return fused_linear_score(
            hidden, self.weight, targets, lam, bounded, self.ignore_index, self.chunk_size,
            label_smoothing=self.label_smoothing, component_grad_norms=component_grad_norms,
        )
