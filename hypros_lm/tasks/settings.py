"""What a run is trained to do: ``task.name`` picks a task of a registered family (None: pretraining)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True)
class TaskSettings:
    name: str | None = None
    """None: language-model pretraining; else a task of a registered family (hypros_lm.tasks): a
    sequence-to-sequence task (multi30k-en-de, wmt14-en-de, …) or a classification task (sst2, ag_news)."""
    init_from: str | None = None
    """A pretraining run folder or an exported Hugging Face folder to start from (None: from scratch)."""
    max_target_tokens: int = 64
    """Sequence-to-sequence: target tokens kept per example (the source is truncated to fit the rest of seq_len)."""
    train_limit: int | None = None
    """Use at most this many training examples."""
    score_over: Literal["vocab", "labels"] = "vocab"
    """Classification: score the objective over the full vocabulary at the label token (as in pretraining),
    or over the label set only (the class-level scores: softmax over the label words' logits)."""
    label_words: str | None = None
    """Classification: comma-separated label words replacing the task's own (one token each, in label order)."""

    def __post_init__(self) -> None:
        if self.name is not None:
            from hypros_lm.tasks.registry import family_for

            family_for(self.name)  # unknown names fail here, listing every registered task
        if self.max_target_tokens < 1:
            raise ValueError(f"task.max_target_tokens={self.max_target_tokens} must be ≥ 1")
        if self.score_over not in ("vocab", "labels"):
            raise ValueError(f"task.score_over={self.score_over!r}; use vocab or labels")
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"task.train_limit={self.train_limit} must be ≥ 1")
