"""The chunk walk under the fused scoring head (see hypros_lm.scoring.fused for the math): running
statistics over vocabulary blocks, per-token scores, the closed-form logit gradients, and the pass that
accumulates ∂L/∂h, ∂L/∂W and ∂L/∂b chunk by chunk in fp32."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hypros_lm.errors import InvalidValue
from hypros_lm.scoring import tiles
from hypros_lm.scoring.scores import REPORTED, RowStats, Score, Terms, merged_terms, power_sums_needed
from hypros_lm.scoring.shards import Shard, reduce_statistics, reduce_sum
from hypros_lm.scoring.tiles import TILES


@dataclass(frozen=True)
class Options:
    """The settings of one scoring pass (chunking filled in by fused._options)."""

    lam: float
    bounded: Score
    ignore_index: int
    label_smoothing: float
    chunk_size: int
    vocab_block_size: int
    component_grad_norms: bool
    z_loss: float = 0.0
    logit_scale: float = 1.0
    softcap: float | None = None
    keep_per_token_loss: bool = False
    score_smoothing: float = 0.0
    shard: Shard | None = None
    """This rank's block of a vocabulary split over a process group (the vocab-parallel head), or None."""
    powers: tuple[float, ...] = field(init=False)
    """The α of each power sum Σe^α the statistics keep (the reported scores' and the bounded score's)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "powers", power_sums_needed(self.bounded, smoothing=bool(self.score_smoothing)))


def _upcast_on_cpu(t: Tensor) -> Tensor:
    """CPU half-precision matmuls are slow and round their output: upcast to fp32 there."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) and not t.is_cuda else t


def _mm(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """a @ b with an fp32 (or fp64) result; on CUDA, half inputs keep tensor-core speed."""
    if a.dtype in (torch.bfloat16, torch.float16):
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (TypeError, RuntimeError):  # torch < 2.8 has no out_dtype: half output, fp32 from here on
            return torch.mm(a, b).float()
    return torch.mm(a, b, out=out) if out is not None else torch.mm(a, b)


def _addmm_(acc: Tensor, a: Tensor, b: Tensor) -> None:
    """acc += a @ b in place, in acc's precision (fp32 products of half inputs on CUDA are added)."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    else:
        acc.add_(_mm(a, b))


def _as_operand(g: Tensor, like: Tensor) -> Tensor:
    """On CUDA the logit gradient goes into the matmuls in the inputs' (half) dtype, as in the forward."""
    return g.to(like.dtype) if like.is_cuda else g


def _view(buf: Tensor, rows: int, cols: int) -> Tensor:
    """A contiguous (rows, cols) view at the start of a flat buffer (out= wants contiguous)."""
    return buf[: rows * cols].view(rows, cols)


class _Stats:
    """Running per-token statistics over vocabulary blocks (see the module docstring)."""

    def __init__(self, rows: int, like: Tensor, powers: tuple[float, ...]):
        self.m = self.argmax = None
        self.powers = powers
        self.s1 = self.u = self.sum_z = like.new_zeros(rows)
        self.sums: tuple[Tensor, ...] = ()
        self.z_y = like.new_zeros(rows)
        self.below_count = self.below_sum = like.new_zeros(rows)  # the score smoothing's: logits under lse + log(ε/V)

    def add(self, z: Tensor, block_start: int, targets: Tensor, want_sum: bool, *, columns: Tensor) -> None:
        """Merge a block of logits (left unchanged) into the running statistics (``columns``: see tiles.statistics)."""
        m, first, s1, u, sum_z, sums = TILES.call(tiles.statistics, z, want_sum, self.powers, columns)
        first = first.long() + block_start
        if want_sum:
            self.sum_z = self.sum_z + sum_z
        local = targets - block_start
        inside = (local >= 0) & (local < z.shape[1])
        picked = z.gather(1, local.clamp(0, z.shape[1] - 1)[:, None]).squeeze(1)
        self.z_y = torch.where(inside, picked, self.z_y)
        if self.m is None:
            self.m, self.argmax, self.s1, self.u, self.sums = m, first, s1, u, sums
            return
        self.argmax = torch.where(m > self.m, first, self.argmax)  # a tie keeps the earlier block's (lower) index
        m_new = torch.maximum(self.m, m)
        shift_old, shift_blk = self.m - m_new, m - m_new  # ≤ 0: rescale both sides to the new max
        a, b = torch.exp(shift_old), torch.exp(shift_blk)
        self.u = a * (self.u + shift_old * self.s1) + b * (u + shift_blk * s1)
        self.s1 = a * self.s1 + b * s1
        self.sums = tuple(torch.exp(k * shift_old) * old + torch.exp(k * shift_blk) * new
                          for k, old, new in zip(self.powers, self.sums, sums, strict=True))
        self.m = m_new

    def row(self, vocab: int) -> RowStats:
        return RowStats(m=self.m, s1=self.s1, z_y=self.z_y, power_sums=dict(zip(self.powers, self.sums, strict=True)),
                        vocab=vocab)

    def smoothing_threshold(self, epsilon: float, vocab: int) -> Tensor:
        """The logit below which p < ε/V: lse + log(ε/V)."""
        return self.m + torch.log(self.s1) + math.log(epsilon / vocab)

    def add_below(self, z: Tensor, threshold: Tensor) -> None:
        count, total = TILES.call(tiles.below, z, threshold)
        self.below_count, self.below_sum = self.below_count + count, self.below_sum + total


def _chunk_scores(st: _Stats, targets: Tensor, vocab_size: int, opts: Options) -> dict[str, Tensor]:
    """Per-token scores from the finished statistics: the log score, each reported score by its key, the run's
    bounded score as ``bounded`` and their mixture ``combined``."""
    row = st.row(vocab_size)
    lse = row.lse
    log = lse - st.z_y
    eps = opts.label_smoothing
    log_smoothed = (1 - eps) * log + eps * (lse - st.sum_z / vocab_size) if eps else log
    reported = {s.key: s.value(row) for s in REPORTED}
    bounded = reported[opts.bounded.key] if opts.bounded in REPORTED else opts.bounded.value(row)
    combined = (1 - opts.lam) * log_smoothed + opts.lam * _smoothed(bounded, st, row, lse, opts)
    if opts.z_loss:
        combined = combined + opts.z_loss * lse * lse
    return {
        "row": row, "lse": lse, "log": log, **reported, "bounded": bounded, "z_loss": lse * lse,
        "combined": combined,
        "entropy": torch.log(st.s1) - st.u / st.s1,
        "correct": (st.argmax == targets).to(lse.dtype),  # the argmax rule: the target is the first maximum
    }


def _smoothed(bounded: Tensor, st: _Stats, row: RowStats, lse: Tensor, opts: Options) -> Tensor:
    """Shao et al.'s score smoothing of the bounded score: (1 − ε)·ℓ + ε·ū − (ε/V)·Σ_{p_j < ε/V} log p_j."""
    eps = opts.score_smoothing
    if not eps:
        return bounded
    penalty = -(eps / row.vocab) * (st.below_sum - st.below_count * lse)
    return (1 - eps) * bounded + eps * opts.bounded.uniform(row) + penalty


def _grad_coefficients(sc: dict[str, Tensor], weight: Tensor, lam: float, opts: Options, vocab_size: int,
                       *, z_loss: float):
    """Per-token (terms, c, d, floor) of G = Σ_k a_k·p^k + c·1_y − d − f·1[z < t], scaled by the token weight: the
    powers k and a_k in ``terms``, the smoothing's floor (t, f) or None."""
    eps, smooth = opts.label_smoothing, opts.score_smoothing
    row = sc["row"]
    terms: Terms = {1.0: (1 - lam) + (2 * z_loss * sc["lse"] if z_loss else 0.0)}
    c = -(1 - lam) * (1 - eps)
    floor = None
    if lam:
        bounded_terms, c_b = opts.bounded.gradient(row)
        parts = [terms, {k: lam * (1 - smooth) * v for k, v in bounded_terms.items()}]
        if smooth:  # ū's terms, and the penalty's (ε/V)·(n_below·p − 1[p < ε/V])
            parts += [{k: lam * smooth * v for k, v in opts.bounded.uniform_gradient(row).items()},
                      {1.0: lam * smooth / vocab_size * sc["below_count"]}]
            floor = (sc["threshold"], weight * (lam * smooth / vocab_size))
        terms = merged_terms(*parts)
        c = c + lam * (1 - smooth) * c_b
    as_rows = tuple((k, weight * v) for k, v in sorted(terms.items()))
    d = weight * ((1 - lam) * eps / vocab_size) if eps and lam != 1 else None
    return as_rows, weight * c, d, floor


class _Logits:
    """The head's logits for one (token chunk × vocab block), with the model's own transform (bias, logit scale,
    soft-cap) applied in place."""

    def __init__(self, weight: Tensor, bias: Tensor | None, opts: Options):
        self.w = _upcast_on_cpu(weight)  # once per call (O(V·d)), not once per chunk
        self.b = None if bias is None else bias.to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
        self.scale, self.cap = opts.logit_scale, opts.softcap

    def __call__(self, h_mm: Tensor, a: int, b: int, out: Tensor) -> Tensor:
        z = _mm(h_mm, self.w[a:b].T, out=out)
        if self.b is not None or self.scale != 1.0 or self.cap:
            TILES.call(tiles.transform_, z, None if self.b is None else self.b[a:b], self.scale, self.cap)
        return z

    def grad(self, z: Tensor, out: Tensor, lse: Tensor, coefs, block_start: int, targets: Tensor,
             valid: Tensor) -> Tensor:
        """G of the loss w.r.t. the untransformed logits of one tile, written into ``out`` (which may be ``z``)."""
        terms, c, d, floor = coefs
        local = targets - block_start
        hit = valid & (local >= 0) & (local < z.shape[1])  # the rows whose target lies in this block
        column = local.clamp(0, z.shape[1] - 1)[:, None]
        z_y = z.gather(1, column).squeeze(1)  # before z is overwritten
        c_y = torch.where(hit, c * tiles.chain_factor(z_y, self.scale, self.cap), 0.0)
        TILES.call(tiles.logit_grad, z, lse, terms, d, out, scale=self.scale, cap=self.cap, floor=floor)
        out.scatter_add_(1, column, c_y[:, None].to(out.dtype))  # masked, not indexed: no nonzero, no host sync
        return out


class _Walk:
    """One scoring pass's shared state: the head's logits, the vocabulary blocks, the preallocated
    (chunk × block) buffer (on CPU a fresh allocation costs more than the op itself), the argmax's column vector
    (tiles.statistics) and the fp32 gradient accumulators of the weight and bias."""

    def __init__(self, hidden: Tensor, weight: Tensor, bias: Tensor | None, opts: Options, *, want_grad: bool):
        self.opts, self.shard = opts, opts.shard
        self.vocab = self.shard.vocab if self.shard else weight.shape[0]  # the whole vocabulary's size
        self.offset = self.shard.start if self.shard else 0  # this weight's first row in the whole vocabulary
        self.acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32  # statistics dtype
        self.logits = _Logits(weight, bias, opts)
        rows = weight.shape[0]
        self.blocks = [(a, min(a + opts.vocab_block_size, rows)) for a in range(0, rows, opts.vocab_block_size)]
        self.single = len(self.blocks) == 1
        widest = min(opts.vocab_block_size, self.shard.widest if self.shard else rows)  # the same on every rank
        if widest > 2**24:  # the tiles' argmax counts columns in fp32 (tiles.statistics)
            raise InvalidValue(f"vocab_block_size={widest} exceeds 2^24 columns; pass a smaller one")
        self.columns = torch.arange(self.blocks[0][1], dtype=self.acc, device=hidden.device)
        rows = min(opts.chunk_size, hidden.shape[0])
        self.buf_z = torch.empty(rows * self.blocks[0][1], dtype=self.acc, device=hidden.device)
        self.grad_w = torch.zeros(weight.shape, dtype=self.acc, device=weight.device) if want_grad else None
        self.grad_b = (torch.zeros(weight.shape[0], dtype=self.acc, device=weight.device)
                       if want_grad and bias is not None else None)

    def statistics(self, h_mm: Tensor, targets: Tensor) -> tuple[_Stats, dict[str, Tensor]]:
        """The chunk's running statistics over every block, and its per-token scores (a single block's logits
        stay in the buffer for the gradient)."""
        c = h_mm.shape[0]
        st = _Stats(c, self.buf_z, self.opts.powers)
        for a, b in self.blocks:
            z = self.logits(h_mm, a, b, _view(self.buf_z, c, b - a))  # (C, B)
            st.add(z, self.offset + a, targets, want_sum=bool(self.opts.label_smoothing),
                   columns=self.columns[: b - a])
        if self.shard:
            reduce_statistics(st, self.shard)
        if self.opts.score_smoothing:  # a second look, once the row's lse is known (recomputing blocks if several)
            threshold = st.smoothing_threshold(self.opts.score_smoothing, self.vocab)
            for a, b in self.blocks:
                z = _view(self.buf_z, c, b - a)
                st.add_below(z if self.single else self.logits(h_mm, a, b, z), threshold)
            if self.shard:
                st.below_count, st.below_sum = reduce_sum([st.below_count, st.below_sum], self.shard)
        scores = _chunk_scores(st, targets, self.vocab, self.opts)
        if self.opts.score_smoothing:
            scores["threshold"], scores["below_count"] = threshold, st.below_count
        return st, scores

    def gradient(self, h_mm: Tensor, sc: dict[str, Tensor], coefs, targets: Tensor, valid: Tensor,
                 components=None) -> tuple[Tensor, Tensor | None]:
        """∂L/∂h of the chunk (fp32), adding its ∂L/∂W and ∂L/∂b into the accumulators; with ``components``
        (the coefficients of λ = 0 and λ = 1) also the squared norms of ∂L_log/∂h and ∂L_bounded/∂h.

        Without a z-loss, G = (1 − λ)·G_log + λ·G_bounded exactly, so one component is computed (an elementwise pass
        and a matmul) and the other follows from the total: the one whose weight is under ½ is computed, and the one
        divided by its weight ≥ ½ is derived, which keeps the rounding of the total within a factor 2."""
        c = h_mm.shape[0]
        gh = torch.zeros((c, h_mm.shape[1]), dtype=self.acc, device=h_mm.device)
        derive = components is not None and not self.opts.z_loss
        direct = (0 if self.opts.lam >= 0.5 else 1) if derive else None
        if derive:
            components = [components[direct]]
        comp_h = [torch.zeros_like(gh) for _ in components] if components is not None else []
        for a, b in self.blocks:
            z = _view(self.buf_z, c, b - a)
            if not self.single:  # the statistics pass left the last block's logits: recompute this one's
                z = self.logits(h_mm, a, b, z)
            w_blk = self.logits.w[a:b]
            for co, acc_h in zip(components or [], comp_h, strict=True):  # for telemetry
                g_i = self.logits.grad(z, torch.empty_like(z), sc["lse"], co, self.offset + a, targets, valid)
                _addmm_(acc_h, _as_operand(g_i, h_mm), w_blk)
            g = self.logits.grad(z, z, sc["lse"], coefs, self.offset + a, targets, valid)
            if self.grad_b is not None:
                self.grad_b[a:b] += g.sum(0)
            g = _as_operand(g, h_mm)
            _addmm_(gh, g, w_blk)
            _addmm_(self.grad_w[a:b], g.T, h_mm)
        if self.shard:  # ∂L/∂h sums every rank's rows' share
            gh, *comp_h = reduce_sum([gh, *comp_h], self.shard)
        if derive:  # the other component from the total: G·W = (1 − λ)·G_log·W + λ·G_bounded·W
            weights = (1.0 - self.opts.lam, self.opts.lam)
            other = (gh - weights[direct] * comp_h[0]) / weights[1 - direct]
            comp_h = [comp_h[0], other] if direct == 0 else [other, comp_h[0]]
        return gh, (torch.stack([x.square().sum() for x in comp_h]) if comp_h else None)


def score_pass(
    hidden: Tensor, head: tuple[Tensor, Tensor | None], targets: Tensor, token_weight: Tensor, opts: Options,
    *, want_grad: bool, per_token: dict[str, list[Tensor]] | None = None,
) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor, Tensor | None] | None]:
    """Walk token chunks × vocab blocks. Returns summed scores (``weighted`` is Σ token_weight·ℓ, the
    loss) and, if asked, the gradients of that loss w.r.t. hidden (in hidden's dtype), weight and bias
    (fp32). ``per_token``, if given, receives each chunk's per-token scores."""
    walk = _Walk(hidden, *head, opts, want_grad=want_grad)
    valid = targets != opts.ignore_index
    token_weight = token_weight.to(walk.acc)
    safe_targets = torch.where(valid, targets, 0)
    keys = ("combined", "log", "bounded", *(s.key for s in REPORTED), "entropy", "correct", "z_loss")
    sums = {k: torch.zeros((), dtype=walk.acc, device=hidden.device) for k in (*keys, "weighted")}
    grad_h = torch.empty_like(hidden) if want_grad else None
    comp_sq = hidden.new_zeros(2, dtype=walk.acc)
    for s in range(0, hidden.shape[0], opts.chunk_size):
        rows = slice(s, s + opts.chunk_size)
        h_mm, t_c, ok_c, w_c = _upcast_on_cpu(hidden[rows]), safe_targets[rows], valid[rows], token_weight[rows]
        st, sc = walk.statistics(h_mm, t_c)
        for k in keys:
            sums[k] += (sc[k] * ok_c).sum()
        sums["weighted"] += (sc["combined"] * w_c).sum()
        if per_token is not None:
            _collect(per_token, st, sc, ok_c, keys[1:], keep_loss=opts.keep_per_token_loss)
        if not want_grad:
            continue
        coefs = _grad_coefficients(sc, w_c, opts.lam, opts, walk.vocab, z_loss=opts.z_loss)
        comp = ([_grad_coefficients(sc, w_c, lam_i, opts, walk.vocab, z_loss=0.0) for lam_i in (0.0, 1.0)]
                if opts.component_grad_norms else None)
        gh_c, comp_c = walk.gradient(h_mm, sc, coefs, t_c, ok_c, comp)
        grad_h[rows] = gh_c.to(hidden.dtype)
        if comp_c is not None:
            comp_sq += comp_c
    sums["n_tokens"] = valid.sum()
    sums["accuracy"] = sums.pop("correct")
    sums["comp_norms"] = comp_sq.sqrt()
    return sums, ((grad_h, walk.grad_w, walk.grad_b) if want_grad else None)


def _collect(per_token: dict[str, list[Tensor]], st: _Stats, sc: dict[str, Tensor], valid: Tensor,
             keys: tuple[str, ...], *, keep_loss: bool) -> None:
    """Append a chunk's per-token scores (and the top-1 probability e^(m−m)/S1; the loss when asked)."""
    sc["confidence"] = 1.0 / st.s1
    for k in (*keys, "confidence"):
        per_token.setdefault(k, []).append(sc[k])
    if keep_loss:
        per_token.setdefault("loss", []).append(torch.where(valid, sc["combined"], 0.0))
