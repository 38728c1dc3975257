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
and ∂L/∂h = G·W, ∂L/∂W = Gᵀ·h, accumulated in fp32.

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

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

Bounded = Literal["brier", "spherical"]

# Default working-memory budget for one chunk's fp32 logits and its temporaries.
_CHUNK_BUDGET_BYTES = 64 * 2**20


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
        if self.grad_norm_log is not None:
            out["grad_norm_log"] = self.grad_norm_log
            out["grad_norm_bounded"] = self.grad_norm_bounded
        return out


@dataclass(frozen=True)
class _Options:
    lam: float
    bounded: Bounded
    ignore_index: int
    label_smoothing: float
    chunk_size: int
    vocab_block_size: int
    component_grad_norms: bool


def default_chunk_size(vocab_size: int) -> int:
    """Tokens per chunk so that a chunk's fp32 logits and ~3 temporaries fit the budget."""
    return max(64, min(8192, _CHUNK_BUDGET_BYTES // (vocab_size * 4 * 4)))


def _matmul_fp32(a: Tensor, b: Tensor) -> Tensor:
    """a @ b with an fp32 result. On CUDA half inputs keep tensor-core speed with fp32 output."""
    if a.dtype == b.dtype and a.dtype in (torch.bfloat16, torch.float16) and a.is_cuda:
        return torch.mm(a, b, out_dtype=torch.float32)
    if a.dtype != b.dtype or a.dtype in (torch.bfloat16, torch.float16):
        return torch.mm(a.float(), b.float())
    return torch.mm(a, b)


def _upcast_on_cpu(t: Tensor) -> Tensor:
    """CPU half-precision matmuls are slow and round their output: upcast to fp32 there."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) and not t.is_cuda else t


class _Stats:
    """Running per-token statistics over vocabulary blocks (see the module docstring)."""

    def __init__(self, z: Tensor, block_start: int, targets: Tensor):
        self.m, idx = z.max(dim=1)
        self.argmax = idx + block_start
        e = torch.exp(z - self.m[:, None])
        self.s1 = e.sum(1)
        self.s2 = (e * e).sum(1)
        self.u = (e * (z - self.m[:, None])).sum(1)
        self.sum_z = z.sum(1)
        self.z_y = torch.zeros_like(self.m)
        self._gather_target(z, block_start, targets)

    def update(self, z: Tensor, block_start: int, targets: Tensor) -> None:
        m_blk, idx = z.max(dim=1)
        m_new = torch.maximum(self.m, m_blk)
        self.argmax = torch.where(m_blk > self.m, idx + block_start, self.argmax)
        shift = self.m - m_new  # ≤ 0
        scale = torch.exp(shift)
        e = torch.exp(z - m_new[:, None])
        self.u = scale * (self.u + shift * self.s1) + (e * (z - m_new[:, None])).sum(1)
        self.s1 = scale * self.s1 + e.sum(1)
        self.s2 = scale * scale * self.s2 + (e * e).sum(1)
        self.sum_z = self.sum_z + z.sum(1)
        self.m = m_new
        self._gather_target(z, block_start, targets)

    def _gather_target(self, z: Tensor, block_start: int, targets: Tensor) -> None:
        local = targets - block_start
        inside = (local >= 0) & (local < z.shape[1])
        picked = z.gather(1, local.clamp(0, z.shape[1] - 1)[:, None]).squeeze(1)
        self.z_y = torch.where(inside, picked, self.z_y)


def _chunk_scores(st: _Stats, vocab_size: int, opts: _Options) -> dict[str, Tensor]:
    """Per-token scores and gradient coefficients from the finished statistics."""
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
    lam = opts.lam
    return {
        "lse": lse, "p_y": p_y, "q": q, "r": r,
        "log": log, "brier": brier, "spherical": spherical,
        "combined": (1 - lam) * log_smoothed + lam * bounded,
        "entropy": torch.log(st.s1) - st.u / st.s1,
    }


def _logit_grad(
    z: Tensor, block_start: int, targets: Tensor, valid: Tensor, sc: dict[str, Tensor],
    weight: Tensor, *, lam: float, opts: _Options, vocab_size: int,
) -> Tensor:
    """∂(Σ_token weight·score)/∂z for one (token chunk × vocab block), fp32 (C, B).

    weight is the per-token factor (1/N_valid, 0 for ignored tokens); lam = 1 or 0 selects one
    component for the per-component gradient norms.
    """
    p = torch.exp(z - sc["lse"][:, None])  # (C, B)
    eps = opts.label_smoothing
    if opts.bounded == "brier":
        alpha_b, beta_b, gamma_b = 2 * (sc["p_y"] - sc["q"]), 2.0, -2 * sc["p_y"]
    else:
        alpha_b, beta_b, gamma_b = 0.0, sc["r"] / sc["q"], -sc["r"]
    alpha = weight * ((1 - lam) + lam * alpha_b)
    beta = weight * (lam * beta_b)
    gamma = weight * (-(1 - lam) * (1 - eps) + lam * gamma_b)
    g = p * (alpha[:, None] + beta[:, None] * p) if lam else p * alpha[:, None]
    if eps and lam != 1:
        g -= (weight * (1 - lam) * eps / vocab_size)[:, None]
    local = targets - block_start
    inside = valid & (local >= 0) & (local < z.shape[1])
    rows = inside.nonzero().squeeze(1)
    g[rows, local[rows]] += gamma[rows]
    return g


def _score_pass(
    hidden: Tensor, weight: Tensor, targets: Tensor, opts: _Options, want_grad: bool,
) -> tuple[dict[str, Tensor], Tensor | None, Tensor | None]:
    """Walk token chunks × vocab blocks. Returns summed scores and, if asked, the gradients
    of the mean combined score w.r.t. hidden (in hidden's dtype) and weight (fp32)."""
    n, v = hidden.shape[0], weight.shape[0]
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32  # statistics dtype
    valid = targets != opts.ignore_index
    n_valid = valid.sum()
    token_weight = valid.to(acc) / n_valid.clamp(min=1).to(acc)
    safe_targets = torch.where(valid, targets, 0)
    w_mm = _upcast_on_cpu(weight)  # once per call (O(V·d)), not once per chunk
    blocks = [(a, min(a + opts.vocab_block_size, v)) for a in range(0, v, opts.vocab_block_size)]
    keys = ("combined", "log", "brier", "spherical", "entropy")
    sums = {k: torch.zeros((), dtype=acc, device=hidden.device) for k in (*keys, "accuracy")}
    grad_h = torch.empty_like(hidden) if want_grad else None
    grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if want_grad else None
    comp_sq = [hidden.new_zeros((), dtype=acc) for _ in range(2)]

    for s in range(0, n, opts.chunk_size):
        h_c, t_c = hidden[s : s + opts.chunk_size], safe_targets[s : s + opts.chunk_size]
        ok_c, w_c = valid[s : s + opts.chunk_size], token_weight[s : s + opts.chunk_size]
        h_mm = _upcast_on_cpu(h_c)
        kept: Tensor | None = None
        st: _Stats | None = None
        for a, b in blocks:
            z = _matmul_fp32(h_mm, w_mm[a:b].T)  # (C, B)
            if st is None:
                st = _Stats(z, a, t_c)
            else:
                st.update(z, a, t_c)
            kept = z if len(blocks) == 1 else None
        sc = _chunk_scores(st, v, opts)
        for k in keys:
            sums[k] += (sc[k] * ok_c).sum()
        sums["accuracy"] += ((st.argmax == t_c) & ok_c).sum()
        if not want_grad:
            continue
        gh_c = torch.zeros(h_c.shape, dtype=acc, device=h_c.device)
        comp_h = [torch.zeros_like(gh_c) for _ in range(2)] if opts.component_grad_norms else None
        for a, b in blocks:
            z = kept if kept is not None else _matmul_fp32(h_mm, w_mm[a:b].T)
            grad_args = dict(opts=opts, vocab_size=v)
            g = _logit_grad(z, a, t_c, ok_c, sc, w_c, lam=opts.lam, **grad_args)
            g_mm = g.to(h_c.dtype) if h_c.is_cuda else g
            gh_c += _matmul_fp32(g_mm, w_mm[a:b])
            grad_w[a:b] += _matmul_fp32(g_mm.T, h_mm)
            if comp_h is not None:
                for i, lam_i in enumerate((0.0, 1.0)):
                    g_i = _logit_grad(z, a, t_c, ok_c, sc, w_c, lam=lam_i, **grad_args)
                    comp_h[i] += _matmul_fp32(g_i, w_mm[a:b])
        grad_h[s : s + opts.chunk_size] = gh_c.to(hidden.dtype)
        if comp_h is not None:
            for i in range(2):
                comp_sq[i] += comp_h[i].square().sum()
    sums["n_tokens"] = n_valid
    sums["comp_norms"] = torch.stack(comp_sq).sqrt()
    return sums, grad_h, grad_w


class _FusedLinearScore(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, opts: _Options, grad_in_forward: bool):
        sums, grad_h, grad_w = _score_pass(hidden, weight, targets, opts, want_grad=grad_in_forward)
        ctx.opts, ctx.grad_in_forward = opts, grad_in_forward
        if grad_in_forward:
            ctx.save_for_backward(grad_h, grad_w)
        else:
            ctx.save_for_backward(hidden, weight, targets)
        ctx.weight_dtype = weight.dtype
        loss = sums["combined"] / sums["n_tokens"].clamp(min=1)
        return loss, sums

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_sums):
        if ctx.grad_in_forward:
            grad_h, grad_w = ctx.saved_tensors
        else:
            hidden, weight, targets = ctx.saved_tensors
            _, grad_h, grad_w = _score_pass(hidden, weight, targets, ctx.opts, want_grad=True)
        grad_h = grad_h * grad_loss.to(grad_h.dtype)
        grad_w = (grad_w * grad_loss).to(ctx.weight_dtype)
        return grad_h, grad_w, None, None, None


def fused_linear_score(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    lam: float | Tensor,
    bounded: Bounded = "brier",
    ignore_index: int = -100,
    chunk_size: int | None = None,
    *,
    vocab_block_size: int | None = None,
    label_smoothing: float = 0.0,
    component_grad_norms: bool = False,
    grad_in_forward: bool = True,
) -> ScoreOutput:
    """Mean over non-ignored tokens of ``(1 − λ)·log + λ·bounded`` for logits ``hidden @ weight.T``,
    without materialising the (N, V) logits.

    hidden: (..., d) final hidden states; weight: (V, d) LM-head weight; targets: (...) token ids
    or ``ignore_index``. λ may be a float or a 0-d tensor. Returns a :class:`ScoreOutput`;
    ``component_grad_norms`` adds ‖∂L_log/∂h‖ and ‖∂L_bounded/∂h‖ (unweighted by λ) when
    gradients are being computed.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    _check_inputs(hidden, weight, targets, bounded, ignore_index, label_smoothing)
    v = weight.shape[0]
    opts = _Options(
        lam=float(lam),
        bounded=bounded,
        ignore_index=ignore_index,
        label_smoothing=float(label_smoothing),
        chunk_size=int(chunk_size or default_chunk_size(min(v, vocab_block_size or v))),
        vocab_block_size=int(vocab_block_size or v),
        component_grad_norms=component_grad_norms,
    )
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    if needs_grad:
        loss, sums = _FusedLinearScore.apply(hidden, weight, targets, opts, grad_in_forward)
    else:
        sums, _, _ = _score_pass(hidden, weight, targets, opts, want_grad=False)
        loss = sums["combined"] / sums["n_tokens"].clamp(min=1)
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
    )


def _check_inputs(
    hidden: Tensor, weight: Tensor, targets: Tensor, bounded: str, ignore_index: int, label_smoothing: float,
) -> None:
    if bounded not in ("brier", "spherical"):
        raise ValueError(f"bounded={bounded!r} is not a bounded score; use 'brier' or 'spherical'")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight has shape {tuple(weight.shape)}; expected (V, {hidden.shape[1]}) to match hidden")
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for {hidden.shape[0]} hidden states; they must match")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing} must lie in [0, 1)")
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= weight.shape[0]))
    if bool(bad.any()):
        first = int(targets[bad][0])
        raise ValueError(
            f"target id {first} is outside the vocabulary [0, {weight.shape[0]}) and is not "
            f"ignore_index={ignore_index}; check the tokenizer's vocabulary against the model's"
        )
