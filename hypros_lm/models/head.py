"""The scoring head: owns the LM-head weight and scores hidden states in its own forward.

Calling the fused function inside this module's ``forward`` matters under DeepSpeed ZeRO-3:
the engine gathers a module's partitioned parameters only around that module's forward, so a
weight read from outside would be an empty shard.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hypros_lm.scoring import ScoreOutput, ScoringOptions
from hypros_lm.scoring.fused import DEFAULT_SCORING
from hypros_lm.scoring.head import score_hidden


class ScoringHead(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        *,
        ignore_index: int = -100,
        options: ScoringOptions = DEFAULT_SCORING,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        self.ignore_index = ignore_index
        self.options = options
        self.score_columns: Tensor | None = None
        """Set (by a classification task) to the label words' token ids: the objective is then scored
        over these columns only (targets are token ids among them), a softmax over the label set."""
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
        columns: Tensor | None = None,
    ) -> ScoreOutput | dict[str, Tensor] | Tensor:
        """Score (B, T, d) hidden states against (B, T) targets: :func:`~hypros_lm.scoring.head.score_hidden`
        with this head's weight and options."""
        return score_hidden(
            hidden, self.weight, targets, lam, options=self.options, bounded=bounded, ignore_index=self.ignore_index,
            component_grad_norms=component_grad_norms,
            per_token=per_token, columns=columns, score_columns=self.score_columns,
        )
