"""Packed token blocks: documents joined by EOS, cut into fixed-length blocks, cached on disk.

The token array of a split depends on the text and the tokenizer only, so it is cached under a key of
both (a second run memory-maps it at once); the block length is a view over it. Which blocks a step
reads is a pure function of (seed, step, micro-step, rank), so resuming needs only the step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from hypros_lm.data.sources import TextSource, iter_documents
from hypros_lm.data.tokenizer import eos_id, key_of, tokenizer_hash


def cache_root() -> Path:
    return Path(os.environ.get("HYPROS_CACHE_DIR", Path.home() / ".cache" / "hypros_lm"))


def tokenize_to_cache(
    source: TextSource, tok: Tokenizer, *, token_budget: int | None = None, log=print
) -> Path:
    """Tokenize a split once; return the path of its cached token array (.npy)."""
    key = key_of({"source": source.identity(), "tokenizer": tokenizer_hash(tok), "budget": token_budget})
    path = cache_root() / "tokens" / f"{source.name.replace('/', '_')}-{source.split}-{key}.npy"
    if path.is_file():
        log(f"data: {source.describe()} -> cached tokens {path}")
        return path
    log(f"data: tokenizing {source.describe()} ...")
    start = time.time()
    eos = eos_id(tok)
    pieces, total, batch = [], 0, []

    def flush() -> None:
        nonlocal total
        for enc in tok.encode_batch(batch):
            ids = enc.ids + [eos]
            pieces.append(np.asarray(ids, dtype=np.int64))
            total += len(ids)
        batch.clear()

    for doc in iter_documents(source):
        batch.append(doc)
        if len(batch) == 256:
            flush()
            if token_budget is not None and total >= token_budget:
                break
    flush()
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    if token_budget is not None:
        tokens = tokens[:token_budget]
    dtype = np.uint16 if tok.get_vocab_size() <= 2**16 else np.uint32
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, tokens.astype(dtype))
    os.replace(tmp, path)
    log(f"data: {len(tokens):,} tokens in {time.time() - start:.1f}s -> {path}")
    return path


class TokenBlocks:
    """Non-overlapping blocks of seq_len + 1 tokens (inputs and shifted targets) over a token array."""

    def __init__(self, path: Path, seq_len: int):
        self.tokens = np.load(path, mmap_mode="r")
        self.seq_len = seq_len
        self.num_blocks = (len(self.tokens) - 1) // seq_len
        if self.num_blocks < 1:
            raise ValueError(f"{path} holds {len(self.tokens)} tokens: fewer than one block of seq_len={seq_len}")

    def __len__(self) -> int:
        return self.num_blocks

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (B, seq_len) int64."""
        rows = np.stack([self.tokens[i * self.seq_len : i * self.seq_len + self.seq_len + 1] for i in indices])
        rows = torch.from_numpy(rows.astype(np.int64))
        return rows[:, :-1], rows[:, 1:]


class BlockOrder:
    """Shuffled block order, reshuffled each epoch, as a pure function of the global sample number."""

    def __init__(self, num_blocks: int, seed: int):
        self.num_blocks, self.seed = num_blocks, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.num_blocks)}
        return self._perms[epoch]

    def indices(self, first_sample: int, count: int) -> np.ndarray:
        samples = np.arange(first_sample, first_sample + count)
        return np.array([self._perm(int(s) // self.num_blocks)[int(s) % self.num_blocks] for s in samples])
