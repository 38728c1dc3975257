"""Counting the operations that make the host wait for the device, by where they were called from.

A ``TorchDispatchMode`` sees every ATen operation; those in ``SYNC_OPS`` read a value back from the device (a
scalar, a data-dependent shape), which on a GPU stalls the host until the stream has caught up. Each is attributed to
the innermost caller outside torch: the project (``hypros_lm``), DeepSpeed, transformers or another package."""

from __future__ import annotations

import collections
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = frozenset({
    "aten::_local_scalar_dense",  # .item(), float(t), bool(t), int(t), .tolist()
    "aten::is_nonzero", "aten::equal",
    "aten::nonzero", "aten::nonzero_static", "aten::masked_select", "aten::_unique2", "aten::unique_dim",
    "aten::unique_consecutive", "aten::repeat_interleave",
})
"""Operations whose result the host must read back (a value or an output size) before going on."""

_TORCH = str(Path(torch.__file__).parent)
_HERE = __file__


def origin(frames: list[traceback.FrameSummary]) -> tuple[str, str]:
    """(package, 'file:line') of the innermost frame outside torch and this module."""
    for frame in reversed(frames):
        if frame.filename.startswith(_TORCH) or frame.filename == _HERE:
            continue
        parts = Path(frame.filename).parts
        package = next((p for p in ("hypros_lm", "deepspeed", "transformers", "tests") if p in parts), "other")
        return package, f"{'/'.join(parts[-2:])}:{frame.lineno}"
    return "torch", ""


class SyncCounter(TorchDispatchMode):
    """``with SyncCounter() as counter: ...``; then ``counter.by_package`` ({package: count}) and ``counter.sites``
    ({(package, site, op): count}). ``Tensor.tolist()`` reads the values without dispatching an operation on the
    CPU (on a GPU it copies to the host), so it is counted by wrapping it while the counter is on."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: collections.Counter = collections.Counter()
        self._tolist = None

    def _record(self, name: str) -> None:
        package, site = origin(traceback.extract_stack()[:-1])
        self.sites[(package, site, name)] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in SYNC_OPS:
            self._record(func._schema.name)
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        self._tolist = torch.Tensor.tolist
        counter, original = self, self._tolist

        def tolist(tensor):
            counter._record("Tensor.tolist")
            return original(tensor)

        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    @property
    def by_package(self) -> dict[str, int]:
        counts: collections.Counter = collections.Counter()
        for (package, _, _), n in self.sites.items():
            counts[package] += n
        return dict(counts)
