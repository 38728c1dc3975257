"""The elementwise work on one (token chunk × vocabulary block) tile of logits, between the head's matmuls.

Three pure functions: the model's logit transform, the tile's statistics (max and argmax, Σe, Σe·(z−m), Σz and the
power sums Σe^α the scores need, Σe² among them) and the logit gradient G = Σ_k a_k·p^k − d (less the score
smoothing's term on the smallest probabilities), times the transform's chain-rule factor. Eagerly each is a string of
memory-bound passes over the tile (a 1024 × 50k fp32 tile is 200 MB); ``torch.compile`` turns each into one
vectorised loop (C++ on CPU, Triton on CUDA), which is what brings the head to its matmul floor
(``benchmarks/scoring.py --against-floor``). The statistics read the logits without writing, and the gradient
recomputes p = e^(z − lse) from them instead of storing e: a second tile buffer costs memory, and on CPU its first
touch in each call (about 60 ms for 180 MB here) took back what the second exponential costs; no benchmark showed it
faster, and e written over the tile inside this loop compiles to a fresh buffer copied back (issue #51). The argmax
is a float min over a column vector the caller keeps, returned as a float, so that the row's max, sums and argmax
stay one loop per row (an index made inside the kernel splits it into three loops, and an arange made per vector
costs a sixth of the pass).

Which runs is chosen per call: the compiled functions for tiles of at least ``COMPILE_MIN_ELEMENTS`` (below that
the one-time compile, seconds per process, costs more than it saves), the eager ones otherwise, inside an outer
``torch.compile`` (which fuses them itself), or where compiling is unavailable or failed (said once).
``HYPROS_COMPILE_TILES=always|never`` overrides the choice (``auto`` is the default); both paths give the same
numbers to fp32 rounding (tests/scoring/test_tiles.py).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from hypros_lm.errors import InvalidValue

COMPILE_MIN_ELEMENTS = 1 << 23  # 32 MiB of fp32 logits, the size of this machine's last-level cache
_MODES = ("auto", "always", "never")


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Σ_v a[c, v]·b[c, v] per row: a fused multiply-reduce when compiled, a batched matmul (no temporary) eagerly."""
    if torch.compiler.is_compiling():
        return (a * b).sum(1)
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def transform_(z: Tensor, bias: Tensor | None, scale: float, cap: float | None) -> None:
    """z ← cap·tanh(scale·(z + bias)/cap) in place (each part only where the model's head has it)."""
    if bias is not None:
        z.add_(bias)
    if scale != 1.0:
        z.mul_(scale)
    if cap:
        z.div_(cap).tanh_().mul_(cap)


def statistics(z: Tensor, want_sum: bool, powers: tuple[float, ...], columns: Tensor
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None, tuple[Tensor, ...]]:
    """Per row of a tile of logits: m = max z, its first column (the argmax, the first maximum at ties as
    torch.argmax) as a float, Σe, Σe·(z − m) with e = e^(z − m), Σz when asked, and the power sums Σe^α for each α of
    ``powers``. The tile is read, not written. ``columns``: 0, 1, …, one per column of the tile, in z's dtype.

    The argmax is not ``z.max(dim=1)``, whose index compiles to a scalar loop on CPU (it doubled this pass, issue
    #51), and the caller makes it an index (fp32 counts columns exactly up to 2^24, past any vocabulary block)."""
    m = z.amax(dim=1)
    zc = z - m[:, None]
    e = torch.exp(zc)
    first = torch.where(zc == 0, columns, float(zc.shape[1])).amin(1)
    sums = tuple(_rowdot(e, e) if a == 2.0 else torch.exp(zc * a).sum(1) for a in powers)
    return m, first, e.sum(1), _rowdot(e, zc), (z.sum(1) if want_sum else None), sums


def chain_factor(z: Tensor, scale: float, cap: float | None) -> Tensor | float:
    """∂z/∂(h·Wᵀ + b), from the transformed logits z: scale·(1 − (z/cap)²), or the scale alone without a cap."""
    if not cap:
        return scale
    return torch.square(z / cap).neg_().add_(1.0).mul_(scale)


def below(z: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: how many logits lie below the row's threshold, and their sum (the score smoothing's penalty)."""
    mask = z < threshold[:, None]
    return mask.sum(1, dtype=z.dtype), torch.where(mask, z, 0.0).sum(1)


def logit_grad(z: Tensor, lse: Tensor, terms: tuple[tuple[float, Tensor], ...], d: Tensor | None, out: Tensor, *,
               scale: float, cap: float | None, floor: tuple[Tensor, Tensor] | None = None) -> None:
    """out ← (Σ_k a_k·p^k − d − f·1[z < t])·chain_factor(z) with p = e^(z − lse), per-row coefficients a_k of the
    powers k in ``terms`` ((1, a) alone or with (2, b) as p·(a + b·p)), d, and ``floor`` = (t, f) (``out`` may be
    ``z``). The target's c·1_y is added by the caller."""
    powers = tuple(k for k, _ in terms)
    if powers in ((1.0,), (1.0, 2.0)):
        p = (z - lse[:, None]).exp_()
        a = terms[0][1][:, None]
        g = p.mul(a) if len(terms) == 1 else torch.addcmul(a, p, terms[1][1][:, None]).mul_(p)
    else:
        zl = z - lse[:, None]
        g = torch.zeros_like(z)
        for k, a in terms:
            g.add_((zl * k).exp_().mul_(a[:, None]))
    if d is not None:
        g.sub_(d[:, None])
    if floor is not None:
        g.sub_((z < floor[0][:, None]) * floor[1][:, None])
    if cap or scale != 1.0:
        g.mul_(chain_factor(z, scale, cap))
    out.copy_(g)


class _Tiles:
    """The three functions, compiled on first use where that pays and works, else eager."""

    def __init__(self) -> None:
        self.failed: str | None = None
        self._compiled: dict[str, Callable] = {}

    def mode(self) -> str:
        mode = os.environ.get("HYPROS_COMPILE_TILES", "auto")
        if mode not in _MODES:
            raise InvalidValue(f"HYPROS_COMPILE_TILES={mode!r}; use one of {', '.join(_MODES)}")
        return mode

    def compiles(self, tile: Tensor) -> bool:
        mode = self.mode()
        if mode == "never" or self.failed or torch.compiler.is_compiling():
            return False
        return mode == "always" or tile.numel() >= COMPILE_MIN_ELEMENTS

    def call(self, fn: Callable, tile: Tensor, *args, **kwargs):
        if not self.compiles(tile):
            return fn(tile, *args, **kwargs)
        if fn.__name__ not in self._compiled:
            self._compiled[fn.__name__] = torch.compile(fn, dynamic=True)
        try:
            return self._compiled[fn.__name__](tile, *args, **kwargs)
        except Exception as err:  # no C++ compiler, no Triton, an unsupported op: the eager path gives the same numbers
            self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            warnings.warn(f"hypros_lm: the fused head's per-tile work runs eagerly (slower), torch.compile failed: "
                          f"{self.failed}; set HYPROS_COMPILE_TILES=never to skip the attempt", stacklevel=2)
            return fn(tile, *args, **kwargs)


TILES = _Tiles()
