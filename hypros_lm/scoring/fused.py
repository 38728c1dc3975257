"""Proper scoring rules fused with the LM head, computed chunk by chunk.

For final hidden states h (N×d) and head weight W (V×d), the logits z = h·Wᵀ are never
materialised whole. Tokens are walked in chunks of ``chunk_size`` and, inside a chunk, the
vocabulary in blocks of ``vocab_block_size``; per token we keep running statistics

    m = max z,  S1 = Σ e^(z−m),  S2 = Σ e^(2(z−m)),  U = Σ e^(z−m)·(z−m),  z_y,  Σ z,  argmax

from which every score follows without a second look at the logits:

    p_y = e^(z_y−m)/S1,  Σp² = S2/S1²,  log = m + log S1 − z_y,
    Brier = 1 − 2·p_y + Σp²,  spherical = 1 − e^(z_y−m)/√S2,  entropy = log S1 − U/S1.

Gradients w.r.t. the logits have a closed form (p = softmax(z), Q = Σp², R = p_y/‖p‖):

    ∂log/∂z   = p − 1_y                      (label smoothing ε: p − (1−ε)·1_y − ε/V)
    ∂Brier/∂z = 2p(p − Q + p_y) − 2p_y·1_y
    ∂sph/∂z   = R(p²/Q − 1_y)

so the combined per-token gradient is ``G = p·(α + β·p) + γ·1_y + δ`` with per-token α, β, γ, δ,
and ∂L/∂h = G·W, ∂L/∂W = Gᵀ·h, accumulated in fp32. A z-loss c·lse² adds 2c·lse·p (∂lse/∂z = p), one
more term in α.

The logits may be transformed the way some models' heads do it, z = cap·tanh(s·(h·Wᵀ + b)/cap)
(bias b, logit scale s, Gemma-2's soft-cap): the statistics are taken over the transformed z, and the
chain rule multiplies G by s·(1 − (z/cap)²) before the matmuls; ∂L/∂b = Σ_tokens G.

Token weights: the loss is Σ_i w_i·ℓ_i with w_i = 1/n_valid (mean), 1 (sum) or 1/num_items_in_batch
(Hugging Face's normalisation across gradient-accumulation micro-batches), 0 for ignored tokens.
``reduction='none'`` returns the per-token ℓ_i; its backward recomputes with w_i = the upstream gradient.

Design choice (see benchmarks/scoring.py): gradients are computed in the forward pass by default.
The loss is terminal, so its upstream gradient is a scalar that only rescales them; this costs
three matmuls per token chunk (z, G·W, Gᵀ·h), like a materialised cross-entropy, where
recomputing in backward costs four. The price is an fp32 buffer of V×d for ∂L/∂W, held from
forward to backward. ``grad_in_forward=False`` recomputes instead.

When the vocabulary is split into several blocks, a token chunk needs two walks over the blocks
(statistics first, then gradients), recomputing each block's logits; with a single block
(the default) the chunk's logits are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import torch
from torch import Tensor

Bounded = Literal["brier", "spherical"]

# Default working-memory budget for one chunk: three fp32 (chunk × vocab-block) buffers.
_CHUNK_BUDGET_BYTES = 512 * 2**20


class ScoreOutput(NamedTuple):
    """Result of one scoring pass. ``loss`` is differentiable; the rest are detached means
    over the non-ignored tokens (0 when every token is ignored).

    A NamedTuple, not a dataclass: DeepSpeed ZeRO-3 walks tuples and dicts of a module's outputs to
    hook the re-gathering of its parameters before backward; it does not look inside dataclasses.
    """

    loss: Tensor
    log: Tensor
    brier: Tensor
    spherical: Tensor
    accuracy: Tensor
    entropy: Tensor
    n_tokens: Tensor
    grad_norm_log: Tensor | None = None
    grad_norm_bounded: Tensor | None = None
    z_loss: Tensor | None = None

    def components(self) -> dict[str, Tensor]:
        """The detached per-component means, keyed by name (for telemetry)."""
        out = {
            "loss": self.loss.detach(),
            "loss_log": self.log,
            "loss_brier": self.brier,
            "loss_spherical": self.spherical,
            "accuracy": self.accuracy,
            "entropy": self.entropy,
        }
        if self.z_loss is not None:
            out["z_loss"] = self.z_loss
        if self.grad_norm_log is not None:
            out["grad_norm_log"] = self.grad_norm_log
            out["grad_norm_bounded"] = self.grad_norm_bounded
        return out


Reduction = Literal["mean", "sum", "none"]


@dataclass(frozen=True)
class _Options:
    lam: float
    bounded: Bounded
    ignore_index: int
    label_smoothing: float
    chunk_size: int
    vocab_block_size: int
    component_grad_norms: bool
    z_loss: float = 0.0
    logit_scale: float = 1.0
    softcap: float | None = None
    keep_per_token_loss: bool = False


def _options(vocab_size: int, *, chunk_size: int | None, vocab_block_size: int | None, **fixed) -> _Options:
    """Options with the chunking defaults filled: the whole vocabulary in one block, and as many tokens
    per chunk as the working-memory budget allows for that block."""
    block = int(vocab_block_size or vocab_size)
    return _Options(chunk_size=int(chunk_size or default_chunk_size(min(vocab_size, block))),
                    vocab_block_size=block, **fixed)


def default_chunk_size(vocab_block: int) -> int:
    """Tokens per chunk so that three fp32 (chunk × vocab_block) buffers fit the budget."""
    return max(128, min(8192, _CHUNK_BUDGET_BYTES // (vocab_block * 4 * 3)))


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


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Σ_v a[c, v]·b[c, v] per row, without a (C, V) temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


class _Stats:
    """Running per-token statistics over vocabulary blocks (see the module docstring).

    ``add`` consumes a block of logits: it centres ``z`` in place and leaves e^(z−m) in ``e``.
    """

    def __init__(self, rows: int, like: Tensor):
        self.m = None
        self.s1 = self.s2 = self.u = self.sum_z = like.new_zeros(rows)
        self.z_y = like.new_zeros(rows)

    def add(self, z: Tensor, e: Tensor, block_start: int, targets: Tensor, want_sum: bool) -> None:
        m_blk = z.amax(dim=1)
        m_new = m_blk if self.m is None else torch.maximum(self.m, m_blk)
        if want_sum:
            self.sum_z = self.sum_z + z.sum(1)
        zc = z.sub_(m_new[:, None])  # z − m, in place
        torch.exp(zc, out=e)
        s1, s2, u = e.sum(1), _rowdot(e, e), _rowdot(e, zc)
        if self.m is None:
            self.s1, self.s2, self.u = s1, s2, u
        else:
            shift = self.m - m_new  # ≤ 0
            scale = torch.exp(shift)
            self.u = scale * (self.u + shift * self.s1) + u
            self.s1 = scale * self.s1 + s1
            self.s2 = scale * scale * self.s2 + s2
        self.m = m_new
        local = targets - block_start
        inside = (local >= 0) & (local < z.shape[1])
        picked = zc.gather(1, local.clamp(0, z.shape[1] - 1)[:, None]).squeeze(1) + m_new
        self.z_y = torch.where(inside, picked, self.z_y)


def _chunk_scores(st: _Stats, vocab_size: int, opts: _Options) -> dict[str, Tensor]:
    """Per-token scores from the finished statistics."""
    lse = st.m + torch.log(st.s1)
    e_y = torch.exp(st.z_y - st.m)
    p_y = e_y / st.s1
    q = st.s2 / (st.s1 * st.s1)  # Σ p²
    r = e_y / torch.sqrt(st.s2)  # p_y / ‖p‖
    log = lse - st.z_y
    eps = opts.label_smoothing
    log_smoothed = (1 - eps) * log + eps * (lse - st.sum_z / vocab_size) if eps else log
    brier = 1 - 2 * p_y + q
    spherical = 1 - r
    bounded = brier if opts.bounded == "brier" else spherical
    combined = (1 - opts.lam) * log_smoothed + opts.lam * bounded
    if opts.z_loss:
        combined = combined + opts.z_loss * lse * lse
    return {
        "lse": lse, "p_y": p_y, "q": q, "r": r,
        "log": log, "brier": brier, "spherical": spherical, "z_loss": lse * lse,
        "combined": combined,
        "entropy": torch.log(st.s1) - st.u / st.s1,
        "correct": (st.z_y >= st.m).to(lse.dtype),  # the target attains the max logit
    }


def _grad_coefficients(sc: dict[str, Tensor], weight: Tensor, lam: float, opts: _Options, vocab_size: int,
                       *, z_loss: float):
    """Per-token (α, β, γ, δ) of G = p·(α + β·p) + γ·1_y − δ, scaled by the token weight."""
    eps = opts.label_smoothing
    if opts.bounded == "brier":
        alpha_b, beta_b, gamma_b = 2 * (sc["p_y"] - sc["q"]), 2.0, -2 * sc["p_y"]
    else:
        alpha_b, beta_b, gamma_b = 0.0, sc["r"] / sc["q"], -sc["r"]
    alpha = weight * ((1 - lam) + lam * alpha_b + (2 * z_loss * sc["lse"] if z_loss else 0.0))
    beta = weight * (lam * beta_b) if lam else None
    gamma = weight * (-(1 - lam) * (1 - eps) + lam * gamma_b)
    delta = weight * ((1 - lam) * eps / vocab_size) if eps and lam != 1 else None
    return alpha, beta, gamma, delta


def _logit_grad(p: Tensor, out: Tensor, coefs, block_start: int, targets: Tensor, valid: Tensor) -> Tensor:
    """G for one (token chunk × vocab block) from its probabilities p, written into ``out``
    (which may be p itself when p is no longer needed)."""
    alpha, beta, gamma, delta = coefs
    if beta is None:
        g = torch.mul(p, alpha[:, None], out=out)
    else:
        g = torch.addcmul(alpha[:, None], p, beta[:, None], out=out)  # α + β·p
        g.mul_(p)
    if delta is not None:
        g.sub_(delta[:, None])
    local = targets - block_start
    rows = (valid & (local >= 0) & (local < p.shape[1])).nonzero().squeeze(1)
    g[rows, local[rows]] += gamma[rows]
    return g


class _Logits:
    """The head's logits for one (token chunk × vocab block), with the model's own transform
    (bias, logit scale, soft-cap) applied in place, and the chain-rule factor of that transform."""

    def __init__(self, weight: Tensor, bias: Tensor | None, opts: _Options):
        self.w = _upcast_on_cpu(weight)  # once per call (O(V·d)), not once per chunk
        self.b = None if bias is None else bias.to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
        self.scale, self.cap = opts.logit_scale, opts.softcap

    def __call__(self, h_mm: Tensor, a: int, b: int, out: Tensor) -> Tensor:
        z = _mm(h_mm, self.w[a:b].T, out=out)
        if self.b is not None:
            z.add_(self.b[a:b])
        if self.scale != 1.0:
            z.mul_(self.scale)
        if self.cap:
            z.div_(self.cap).tanh_().mul_(self.cap)
        return z

    @property
    def transformed(self) -> bool:
        return self.scale != 1.0 or bool(self.cap)

    def chain_factor(self, z: Tensor) -> Tensor:
        """∂z/∂(h·Wᵀ + b) elementwise, from the transformed logits z (a new tensor)."""
        if not self.cap:
            return torch.full_like(z, self.scale)
        return torch.square(z / self.cap).neg_().add_(1.0).mul_(self.scale)


def _score_pass(
    hidden: Tensor, head: tuple[Tensor, Tensor | None], targets: Tensor, token_weight: Tensor, opts: _Options,
    *, want_grad: bool, per_token: dict[str, list[Tensor]] | None = None,
) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor, Tensor | None] | None]:
    """Walk token chunks × vocab blocks. Returns summed scores (``weighted`` is Σ token_weight·ℓ, the
    loss) and, if asked, the gradients of that loss w.r.t. hidden (in hidden's dtype), weight and bias
    (fp32). ``per_token``, if given, receives each chunk's per-token scores."""
    weight, bias = head
    n, v = hidden.shape[0], weight.shape[0]
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32  # statistics dtype
    valid = targets != opts.ignore_index
    token_weight = token_weight.to(acc)
    safe_targets = torch.where(valid, targets, 0)
    logits = _Logits(weight, bias, opts)
    blocks = [(a, min(a + opts.vocab_block_size, v)) for a in range(0, v, opts.vocab_block_size)]
    # Preallocated (chunk × block) buffers: on CPU a fresh allocation costs more than the op itself.
    rows = min(opts.chunk_size, n)
    buf_z, buf_e = (torch.empty(rows * blocks[0][1], dtype=acc, device=hidden.device) for _ in range(2))
    keys = ("combined", "log", "brier", "spherical", "entropy", "correct", "z_loss")
    sums = {k: torch.zeros((), dtype=acc, device=hidden.device) for k in (*keys, "weighted")}
    grad_h = torch.empty_like(hidden) if want_grad else None
    grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if want_grad else None
    grad_b = torch.zeros(v, dtype=acc, device=weight.device) if want_grad and bias is not None else None
    comp_sq = hidden.new_zeros(2, dtype=acc)
    single = len(blocks) == 1

    for s in range(0, n, opts.chunk_size):
        h_c, t_c = hidden[s : s + opts.chunk_size], safe_targets[s : s + opts.chunk_size]
        ok_c, w_c = valid[s : s + opts.chunk_size], token_weight[s : s + opts.chunk_size]
        c = h_c.shape[0]
        h_mm = _upcast_on_cpu(h_c)
        st = _Stats(c, token_weight)
        for a, b in blocks:
            z = logits(h_mm, a, b, _view(buf_z, c, b - a))  # (C, B)
            st.add(z, _view(buf_e, c, b - a), a, t_c, want_sum=bool(opts.label_smoothing))
        sc = _chunk_scores(st, v, opts)
        for k in keys:
            sums[k] += (sc[k] * ok_c).sum()
        sums["weighted"] += (sc["combined"] * w_c).sum()
        if per_token is not None:
            sc["confidence"] = 1.0 / st.s1  # top-1 probability: e^(m−m)/S1
            for k in (*keys[1:], "confidence"):
                per_token.setdefault(k, []).append(sc[k])
            if opts.keep_per_token_loss:
                per_token.setdefault("loss", []).append(torch.where(ok_c, sc["combined"], 0.0))
        if not want_grad:
            continue
        coefs = _grad_coefficients(sc, w_c, opts.lam, opts, v, z_loss=opts.z_loss)
        comp = None
        if opts.component_grad_norms:
            comp = [_grad_coefficients(sc, w_c, lam_i, opts, v, z_loss=0.0) for lam_i in (0.0, 1.0)]
        gh_c = torch.zeros(h_c.shape, dtype=acc, device=h_c.device)
        comp_h = [torch.zeros_like(gh_c) for _ in range(2)] if comp is not None else []
        for a, b in blocks:
            factor = None
            if single:  # e^(z−m) from the statistics pass: p = e / S1
                if logits.transformed:  # buf_z still holds z − m
                    factor = logits.chain_factor(_view(buf_z, c, b - a).add(st.m[:, None]))
                p = _view(buf_e, c, b - a).div_(st.s1[:, None])
            else:
                z = logits(h_mm, a, b, _view(buf_z, c, b - a))
                factor = logits.chain_factor(z) if logits.transformed else None
                p = z.sub_(sc["lse"][:, None]).exp_()
            w_blk = logits.w[a:b]
            for co, acc_h in zip(comp or [], comp_h, strict=True):  # ∂L_log/∂h and ∂L_bounded/∂h, for telemetry
                g_i = _logit_grad(p, torch.empty_like(p), co, a, t_c, ok_c)
                if factor is not None:
                    g_i.mul_(factor)
                _addmm_(acc_h, _as_operand(g_i, h_mm), w_blk)
            g = _logit_grad(p, _view(buf_z if single else buf_e, c, b - a), coefs, a, t_c, ok_c)
            if factor is not None:
                g.mul_(factor)
            if grad_b is not None:
                grad_b[a:b] += g.sum(0)
            g = _as_operand(g, h_mm)
            _addmm_(gh_c, g, w_blk)
            _addmm_(grad_w[a:b], g.T, h_mm)
        grad_h[s : s + c] = gh_c.to(hidden.dtype)
        if comp_h:
            comp_sq += torch.stack([x.square().sum() for x in comp_h])
    sums["n_tokens"] = valid.sum()
    sums["accuracy"] = sums.pop("correct")
    sums["comp_norms"] = comp_sq.sqrt()
    return sums, ((grad_h, grad_w, grad_b) if want_grad else None)


class _FusedLinearScore(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, token_weight: Tensor,
                opts: _Options, grad_in_forward: bool):
        per_token: dict[str, list[Tensor]] | None = {} if opts.keep_per_token_loss else None
        sums, grads = _score_pass(hidden, (weight, bias), targets, token_weight, opts, want_grad=grad_in_forward,
                                  per_token=per_token)
        ctx.opts, ctx.grad_in_forward = opts, grad_in_forward
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        if grad_in_forward:
            ctx.save_for_backward(*grads)
        else:
            ctx.save_for_backward(hidden, weight, bias, targets, token_weight)
        loss = torch.cat(per_token["loss"]) if per_token is not None else sums["weighted"]
        return loss, sums

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_sums):
        if ctx.grad_in_forward:  # the loss is a weighted sum: the upstream scalar only rescales
            grad_h, grad_w, grad_b = (None if g is None else g * grad_loss.to(g.dtype) for g in ctx.saved_tensors)
        else:  # recompute with the upstream gradient folded into the token weights (per token for 'none')
            hidden, weight, bias, targets, token_weight = ctx.saved_tensors
            if ctx.opts.keep_per_token_loss:
                token_weight = grad_loss * (targets != ctx.opts.ignore_index)
            else:
                token_weight = token_weight * grad_loss
            opts = replace(ctx.opts, keep_per_token_loss=False)
            _, (grad_h, grad_w, grad_b) = _score_pass(hidden, (weight, bias), targets, token_weight, opts, want_grad=True)
        weight_dtype, bias_dtype = ctx.dtypes
        return (grad_h, grad_w.to(weight_dtype), None if grad_b is None else grad_b.to(bias_dtype),
                None, None, None, None)


def fused_linear_score(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    lam: float | Tensor,
    bounded: Bounded = "brier",
    bias: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    num_items_in_batch: int | Tensor | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    vocab_block_size: int | None = None,
    component_grad_norms: bool = False,
    grad_in_forward: bool = True,
) -> ScoreOutput:
    """``(1 − λ)·log + λ·bounded`` (+ ``z_loss``·lse²) per token for the logits
    ``softcap·tanh(logit_scale·(hidden @ weight.T + bias)/softcap)``, without materialising the (N, V) logits.

    hidden: (..., d) final hidden states; weight: (V, d) LM-head weight; targets: (...) token ids
    or ``ignore_index``. λ may be a float or a 0-d tensor. ``reduction``: ``mean`` over the
    non-ignored tokens, ``sum``, or ``none`` (a (N,) tensor, 0 at ignored tokens); with
    ``num_items_in_batch`` the sum is divided by it instead (Hugging Face's normalisation over
    gradient-accumulation micro-batches). Returns a :class:`ScoreOutput` whose components are
    means over the non-ignored tokens; ``component_grad_norms`` adds ‖∂L_log/∂h‖ and
    ‖∂L_bounded/∂h‖ (unweighted by λ) when gradients are being computed in forward.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    _check_inputs(hidden, weight, targets, bounded=bounded, ignore_index=ignore_index, label_smoothing=label_smoothing,
                  bias=bias, reduction=reduction, softcap=softcap)
    opts = _options(weight.shape[0], lam=float(lam), bounded=bounded, ignore_index=ignore_index,
                    label_smoothing=float(label_smoothing), chunk_size=chunk_size, vocab_block_size=vocab_block_size,
                    component_grad_norms=component_grad_norms, z_loss=float(z_loss), logit_scale=float(logit_scale),
                    softcap=float(softcap) if softcap else None, keep_per_token_loss=reduction == "none")
    token_weight = _token_weights(targets != ignore_index, reduction, num_items_in_batch)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias))
    per_token_loss = reduction == "none"
    if needs_grad:
        loss, sums = _FusedLinearScore.apply(hidden, weight, bias, targets, token_weight, opts,
                                             grad_in_forward and not per_token_loss)
    else:
        collected: dict[str, list[Tensor]] | None = {} if per_token_loss else None
        sums, _ = _score_pass(hidden, (weight, bias), targets, token_weight, opts, want_grad=False, per_token=collected)
        loss = torch.cat(collected["loss"]) if collected is not None else sums["weighted"]
    denom = sums["n_tokens"].clamp(min=1).float()
    norms = sums["comp_norms"] if (needs_grad and component_grad_norms and grad_in_forward) else None
    return ScoreOutput(
        loss=loss,
        log=sums["log"] / denom,
        brier=sums["brier"] / denom,
        spherical=sums["spherical"] / denom,
        accuracy=sums["accuracy"] / denom,
        entropy=sums["entropy"] / denom,
        n_tokens=sums["n_tokens"],
        grad_norm_log=None if norms is None else norms[0],
        grad_norm_bounded=None if norms is None else norms[1],
        z_loss=sums["z_loss"] / denom if z_loss else None,
    )


def _token_weights(valid: Tensor, reduction: str, num_items_in_batch: int | Tensor | None) -> Tensor:
    """w_i of the loss Σ_i w_i·ℓ_i: 1/n_valid (mean), 1 (sum, none) or 1/num_items_in_batch; 0 where ignored."""
    w = valid.double()  # cast to the statistics' dtype later: 1/n stays exact in float64 runs
    if num_items_in_batch is not None:
        return w / torch.as_tensor(num_items_in_batch, device=w.device).double()
    if reduction == "mean":
        return w / valid.sum().clamp(min=1).double()
    return w


@torch.no_grad()
def token_scores(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    vocab_block_size: int | None = None,
) -> dict[str, Tensor]:
    """Per-token scores for evaluation, from the same chunked pass (no N×V tensor, no gradients).

    Returns 1-D tensors over the non-ignored tokens: ``log`` (NLL), ``brier``, ``spherical``,
    ``entropy``, ``confidence`` (top-1 probability) and ``correct`` (1 if the target is the top-1).
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    _check_inputs(hidden, weight, targets, bounded="brier", ignore_index=ignore_index, label_smoothing=0.0, bias=bias,
                  reduction="none", softcap=softcap)
    opts = _options(weight.shape[0], lam=0.0, bounded="brier", ignore_index=ignore_index, label_smoothing=0.0,
                    chunk_size=chunk_size, vocab_block_size=vocab_block_size, component_grad_norms=False,
                    logit_scale=float(logit_scale), softcap=float(softcap) if softcap else None)
    collected: dict[str, list[Tensor]] = {}
    valid = targets != ignore_index
    _score_pass(hidden, (weight, bias), targets, valid.double(), opts, want_grad=False, per_token=collected)
    return {k: torch.cat(v)[valid] for k, v in collected.items()}


def _check_inputs(
    hidden: Tensor, weight: Tensor, targets: Tensor, *, bounded: str, ignore_index: int, label_smoothing: float,
    bias: Tensor | None, reduction: str, softcap: float | None,
) -> None:
    if bounded not in ("brier", "spherical"):
        raise ValueError(f"bounded={bounded!r} is not a bounded score; use 'brier' or 'spherical'")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight has shape {tuple(weight.shape)}; expected (V, {hidden.shape[1]}) to match hidden")
    if weight.numel() == 0:
        raise ValueError("the head weight is empty: under ZeRO-3 or FSDP a parameter read outside its module's "
                         "forward is an unfilled shard; call the loss inside the head's forward (see "
                         "hypros_lm.integrations.transformers.patch_causal_lm)")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias has shape {tuple(bias.shape)}; expected ({weight.shape[0]},), one per vocabulary row")
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for {hidden.shape[0]} hidden states; they must match")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing} must lie in [0, 1)")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction={reduction!r}; use 'mean', 'sum' or 'none'")
    if softcap is not None and softcap < 0:
        raise ValueError(f"softcap={softcap} must be positive (or None for no soft-capping)")
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= weight.shape[0]))
    if bool(bad.any()):
        first = int(targets[bad][0])
        raise ValueError(
            f"target id {first} is outside the vocabulary [0, {weight.shape[0]}) and is not "
            f"ignore_index={ignore_index}; check the tokenizer's vocabulary against the model's"
        )
