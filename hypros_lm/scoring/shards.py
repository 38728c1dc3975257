"""The vocab-parallel head: each rank of a process group holds a contiguous block of the head's vocabulary rows (in
rank order; blocks may differ in size), the hidden states and targets are the same on every rank, and the fused
head's per-token statistics combine across the blocks as they do across a rank's own vocabulary blocks.

Every registered score is a function of per-token row statistics (hypros_lm.scoring.chunks), so a token chunk needs,
after each rank's walk over its own rows:

1. one all-reduce (max) of the row maximum m;
2. one all-reduce (sum) of the statistics rescaled to that maximum, stacked: Σe, Σe·(z − m), each power sum Σe^α,
   the target's logit (from the rank that holds it) and Σz;
3. one all-reduce (min) of the argmax over the ranks that hold the maximum (the first maximum at ties);

with score smoothing, 4. one all-reduce (sum) of its count and sum below the threshold; and after the gradient
tiles, 5. one all-reduce (sum) of the chunk's ∂L/∂h (with the component gradients when their norms are asked).
None is of size V: the largest is the chunk's (C, d) ∂L/∂h. ∂L/∂W (and ∂L/∂b) stay on their rank's rows; ∂L/∂h is
the sum over the group, the same on every rank.

Before any compute, one all-gather of each rank's description (its rows, the hidden size and token count, the
dtype, the chunk size asked for, whether it has a bias) lets every rank check the same facts and raise the same
error, so no rank is left waiting in a collective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from hypros_lm.errors import InvalidValue

_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_FIELDS = ("rows", "hidden size", "number of tokens", "dtype", "chunk size", "bias")


@dataclass(frozen=True, eq=False)
class Shard:
    """This rank's block of the vocabulary: rows [start, start + sizes[rank]) of ``vocab``, in ``group``."""

    group: Any
    rank: int
    sizes: tuple[int, ...]

    @property
    def start(self) -> int:
        return sum(self.sizes[: self.rank])

    @property
    def vocab(self) -> int:
        return sum(self.sizes)

    @property
    def widest(self) -> int:
        """The largest block: chunk sizes follow it, so every rank walks the same token chunks."""
        return max(self.sizes)


def _require_distributed() -> None:
    if not dist.is_available() or not dist.is_initialized():
        raise InvalidValue("process_group= needs torch.distributed initialised (dist.init_process_group) on every rank "
                           "of the group; pass process_group=None for a head that is whole on this rank")


def vocab_shard(weight: Tensor, group: Any, *, hidden: Tensor, bias: Tensor | None, chunk_size: int | None,
                shard_sizes: Sequence[int] | None = None) -> Shard:
    """This rank's [`Shard`][hypros_lm.scoring.shards.Shard], after one all-gather of every rank's description and
    the same checks on every rank (``shard_sizes``, if given, must be the rows each rank holds, in rank order)."""
    _require_distributed()
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    mine = [weight.shape[0] if weight.ndim == 2 else 0, weight.shape[-1], hidden.shape[0],
            _DTYPES.index(weight.dtype) if weight.dtype in _DTYPES else -1, chunk_size or 0, int(bias is not None)]
    table = [torch.empty(len(mine), dtype=torch.int64, device=weight.device) for _ in range(world)]
    dist.all_gather(table, torch.tensor(mine, dtype=torch.int64, device=weight.device), group=group)
    rows = [[int(v) for v in t.tolist()] for t in table]  # once per call, before the chunks
    _check(rows, shard_sizes)
    return Shard(group, rank, tuple(r[0] for r in rows))


def _check(rows: list[list[int]], shard_sizes: Sequence[int] | None) -> None:
    """The same verdict on every rank, from the same gathered table."""
    def shown(name: str, value: int):
        return _DTYPES[value] if name == "dtype" and value >= 0 else value

    for k, name in enumerate(_FIELDS[1:], 1):
        differ = [r for r, row in enumerate(rows) if row[k] != rows[0][k]]
        if differ:
            raise InvalidValue(f"the vocab-parallel head needs the same {name} on every rank of the group: rank "
                               f"{differ[0]} has {shown(name, rows[differ[0]][k])}, rank 0 has {shown(name, rows[0][k])}")
    if rows[0][3] < 0:
        raise InvalidValue(f"the head weight's dtype is none of {[str(d) for d in _DTYPES]}")
    empty = [r for r, row in enumerate(rows) if row[0] < 1]
    if empty:
        raise InvalidValue(f"rank {empty[0]} holds no vocabulary rows; each rank of the group holds a non-empty "
                           f"contiguous block of the head's rows (weight of shape (rows, d))")
    if shard_sizes is not None:
        held = [row[0] for row in rows]
        if list(shard_sizes) != held:
            raise InvalidValue(f"shard_sizes={list(shard_sizes)} do not tile the vocabulary as the ranks hold it: the "
                               f"ranks hold {held} rows (in rank order, {sum(held)} in all); pass those or leave "
                               f"shard_sizes out to take them from the ranks")


def reduce_statistics(st, shard: Shard) -> None:
    """Combine a chunk's running statistics (chunks._Stats, over this rank's rows) across the group, in place."""
    m = st.m.clone()
    dist.all_reduce(m, op=dist.ReduceOp.MAX, group=shard.group)
    shift = st.m - m  # ≤ 0: this rank's statistics rescaled to the global maximum
    a = torch.exp(shift)
    parts = [a * st.s1, a * (st.u + shift * st.s1), st.z_y, st.sum_z,
             *(torch.exp(k * shift) * s for k, s in zip(st.powers, st.sums, strict=True))]
    stacked = torch.stack([p.to(st.s1.dtype) for p in parts])
    dist.all_reduce(stacked, group=shard.group)
    first = torch.where(st.m == m, st.argmax, shard.vocab)  # only the ranks holding the maximum propose its index
    dist.all_reduce(first, op=dist.ReduceOp.MIN, group=shard.group)
    st.m, st.argmax = m, first
    st.s1, st.u, st.z_y, st.sum_z, *sums = stacked.unbind(0)
    st.sums = tuple(sums)


def reduce_sum(tensors: Sequence[Tensor], shard: Shard) -> list[Tensor]:
    """The sums over the group of same-shaped tensors, in one all-reduce."""
    stacked = torch.stack(list(tensors))
    dist.all_reduce(stacked, group=shard.group)
    return list(stacked.unbind(0))
