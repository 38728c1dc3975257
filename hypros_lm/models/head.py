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
        """Score (B, T, d) hidden states against (B, T) targets.

        Without targets: the (B, T, V) logits (generation, export checks), or only the given
        ``columns`` (B, T, len(columns)), e.g. a classifier's label words. With ``per_token``: the
        per-token scores of :func:`token_scores` over the non-ignored tokens (evaluation).
        """
        if targets is None:
            weight = self.weight if columns is None else self.weight[columns.to(self.weight.device)]
            return hidden @ weight.T
        if per_token:
            return token_scores(hidden, self.weight, targets, ignore_index=self.ignore_index, chunk_size=self.chunk_size)
        weight = self.weight
        if self.score_columns is not None:
            weight, targets = self._restrict(targets)
        return fused_linear_score(
            hidden, weight, targets, lam=lam, bounded=bounded, ignore_index=self.ignore_index, chunk_size=self.chunk_size,
            label_smoothing=self.label_smoothing, component_grad_norms=component_grad_norms,
        )

    def _restrict(self, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The score_columns rows of the weight, and the targets as positions among them."""
        columns = self.score_columns.to(targets.device)
        position = torch.full((self.weight.shape[0],), -1, dtype=torch.long, device=targets.device)
        position[columns] = torch.arange(columns.numel(), device=targets.device)
        scored = targets != self.ignore_index
        mapped = torch.where(scored, position[targets.clamp(min=0)], targets)
        if bool((mapped[scored] < 0).any()):
            raise ValueError("a target token is not among the head's score_columns (the label words)")
        return self.weight[columns], mapped
