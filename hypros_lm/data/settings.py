"""The data settings (``--data.*``): one declaration for training and for ``hypros-prepare``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypros_lm.data.holdout import Holdout
from hypros_lm.errors import InvalidValue

PREPARATION = ("vocab_size", "tokenizer", "tokenizer_sample_chars", "token_budget", "docs_per_shard")
"""The settings that decide a prepared corpus ([`DataSettings.preparation()`][hypros_lm.data.settings.DataSettings.preparation])."""
PREPARE_SETTINGS = ("name", "text_field", *PREPARATION, "holdout_fraction", "holdout_min_tokens", "holdout_seed")
"""The data settings ``hypros-prepare`` takes (the others are about training on the prepared folder)."""


@dataclass(kw_only=True)
class DataSettings:
    name: str = "wikitext-2-v1"
    """Hub name (offline: resolved to the data folder), or a local file/folder of .txt/.jsonl/.parquet."""
    train_split: str = "train"
    """The split trained on."""
    val_split: str = "validation"
    """The split validated on (held out of the training split when the source has none)."""
    text_field: str = "text"
    """Field holding the text in .jsonl/.parquet records and hub rows."""
    seq_len: int = 128
    """Tokens per training sequence."""
    tokenizer: str | None = None
    """tokenizer.json path/folder or hub name; None trains a byte-level BPE on the training split."""
    vocab_size: int = 8192
    """Vocabulary of a trained BPE."""
    token_budget: int | None = None
    """Training tokens kept: a preparation keeps the shards in order up to it, training reads at most this many
    (a prepared folder's own budget applies first); None: the whole split."""
    tokenizer_sample_chars: int = 200_000_000
    """Characters of training text a BPE is trained on (the first documents up to this many)."""
    holdout_fraction: float = 0.005
    """A source without a validation split (a local file, a folder without validation.*, a hub set without one):
    the share of its documents held out for validation (seeded, document-level; training keeps the rest)."""
    holdout_min_tokens: int = 25_000
    """...and at least about this many tokens of them (at most a tenth of the documents)."""
    holdout_seed: int = 0
    """Seed of the held-out choice (apart from train.seed, so runs of several seeds share one split)."""
    docs_per_shard: int = 65536
    """Documents per shard of a prepared corpus (≈ 100M tokens for web text, 200 MB at uint16)."""
    verify_shards: bool = True
    """Check every shard's sha256 against the manifest before training (once per node, by its local rank 0:
    ≈ 1 s per GB; sizes are always checked on every rank)."""

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise InvalidValue(f"data.seq_len={self.seq_len} must be at least 2")
        Holdout(fraction=self.holdout_fraction, min_tokens=self.holdout_min_tokens)  # checks both
        if self.token_budget is not None and self.token_budget <= self.seq_len:
            raise InvalidValue(f"data.token_budget={self.token_budget} must exceed data.seq_len={self.seq_len}")
        for name in ("docs_per_shard", "tokenizer_sample_chars"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"data.{name}={getattr(self, name)} must be ≥ 1")

    def preparation(self) -> dict[str, Any]:
        """What decides how the corpus is prepared into shards: recorded in a prepared folder's manifest, which a
        resumed preparation must match."""
        return {name: getattr(self, name) for name in PREPARATION}
