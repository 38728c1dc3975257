"""Which token blocks a step reads, and where caches live.

Which blocks a step reads is a pure function of (seed, step, micro-step, rank), so resuming needs only
the step. The blocks themselves are memory-mapped token shards ([`hypros_lm.data.prepare`][hypros_lm.data.prepare]).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def cache_root() -> Path:
    return Path(os.environ.get("HYPROS_CACHE_DIR", Path.home() / ".cache" / "hypros_lm"))


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
