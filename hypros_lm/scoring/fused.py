"""Proper scoring rules fused with the LM head, computed chunk by chunk.

For final hidden states h (N×d) and head weight W (V×d), the logits z = h·Wᵀ are never
materialised whole. Tokens are walked in chunks of ``chunk_size`` and, inside a chunk, the
vocabulary in blocks of ``vocab_block_size``; per token we keep running statistics

    m = max z,  S1 = Σ e^(z−m),  S_α = Σ e^(α(z−m)) (α = 2 and the bounded score's),  U = Σ e^(z−m)·(z−m),
    z_y,  Σ z,  argmax

from which every score follows without a second look at the logits (the registered scores' values in
hypros_lm.scoring.scores):

    p_y = e^(z_y−m)/S1,  Σp² = S2/S1²,  log = m + log S1 − z_y,
    Brier = 1 − 2·p_y + Σp²,  spherical = 1 − e^(z_y−m)/√S2,  entropy = log S1 − U/S1.

Gradients w.r.t. the logits have a closed form (p = softmax(z), Q = Σp², R = p_y/‖p‖):

    ∂log/∂z   = p − 1_y                      (label smoothing ε: p − (1−ε)·1_y − ε/V)
    ∂Brier/∂z = 2p(p − Q + p_y) − 2p_y·1_y
    ∂sph/∂z   = R(p²/Q − 1_y)

and every registered score's is of the form Σ_k a_k·p^k + c·1_y (powers k of p with per-token
coefficients), so the combined per-token gradient is ``G = Σ_k a_k·p^k + c·1_y − d`` (p·(a + b·p) for
the α = 2 scores), and ∂L/∂h = G·W, ∂L/∂W = Gᵀ·h, accumulated in fp32. A z-loss c·lse² adds 2c·lse·p
(∂lse/∂z = p), one more term in a_1; the score smoothing adds the powers of its mean over targets and
a term on the logits below lse + log(ε/V), which it counts in a second look at each tile.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torch.distributed import ProcessGroup

from hypros_lm.errors import InvalidValue
from hypros_lm.metrics.calibration import bin_sums
from hypros_lm.scoring.chunks import Options, score_pass
from hypros_lm.scoring.scores import REPORTED, Score, bounded_score
from hypros_lm.scoring.shards import vocab_shard

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
    scores: dict[str, Tensor]
    """The mean of each reported score and of the pass's bounded score, by registry key (`scores.REPORTED`)."""
    bounded: Tensor
    """The mean of the pass's own bounded score, the one λ weighs (also in ``scores``)."""
    accuracy: Tensor
    entropy: Tensor
    n_tokens: Tensor
    grad_norm_log: Tensor | None = None
    grad_norm_bounded: Tensor | None = None
    z_loss: Tensor | None = None
    calibration: Tensor | None = None
    """With ``calibration_bins``: the (3, B) equal-width bin sums (count, Σ confidence, Σ correct) of the top-1
    predictions (`hypros_lm.metrics.calibration.BinSums`), so ECE needs no logits."""

    def mean(self, key: str) -> Tensor:
        """The mean of ``log``, ``entropy``, ``accuracy`` or of a score by its key (``brier``, ``power-3``)."""
        return self.scores[key] if key in self.scores else getattr(self, key)

    def components(self) -> dict[str, Tensor]:
        """The detached per-component means, keyed by name (for telemetry)."""
        out = {
            "loss": self.loss.detach(),
            "loss_log": self.log,
            **{f"loss_{key}": value for key, value in self.scores.items()},
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


def _options(vocab_size: int, *, chunk_size: int | None, vocab_block_size: int | None, **fixed) -> Options:
    """Options with the chunking defaults filled: the whole vocabulary in one block, and as many tokens
    per chunk as the working-memory budget allows for that block."""
    block = int(vocab_block_size or vocab_size)
    return Options(chunk_size=int(chunk_size or default_chunk_size(min(vocab_size, block))),
                    vocab_block_size=block, **fixed)


def default_chunk_size(vocab_block: int) -> int:
    """Tokens per chunk so that three fp32 (chunk × vocab_block) buffers fit the budget."""
    return max(128, min(8192, _CHUNK_BUDGET_BYTES // (vocab_block * 4 * 3)))


class _FusedLinearScore(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, token_weight: Tensor,
                opts: Options, grad_in_forward: bool):
        per_token: dict[str, list[Tensor]] | None = {} if opts.keep_per_token_loss else None
        sums, grads = score_pass(hidden, (weight, bias), targets, token_weight, opts, want_grad=grad_in_forward,
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
            _, (grad_h, grad_w, grad_b) = score_pass(hidden, (weight, bias), targets, token_weight, opts, want_grad=True)
        weight_dtype, bias_dtype = ctx.dtypes
        return (grad_h, grad_w.to(weight_dtype), None if grad_b is None else grad_b.to(bias_dtype),
                None, None, None, None)


def check_options(*, lam: float | Tensor, num_items_in_batch: int | Tensor | None = None,
                  valid: Tensor | None = None) -> None:
    """Values that would give a loss of another objective, or none, refused with the value and its range before
    any work. A λ or item count given as a tensor is checked on its device without being read back (``require``:
    reading it would wait on the device at every call). ``valid``: which targets are scored (an item count of 0 is
    allowed only when none is)."""
    def lam_message() -> str:
        return (f"lam={float(lam):g} must lie in [0, 1]: the loss is (1 − λ)·log + λ·bounded, a proper score only for "
                f"λ in that range (a LambdaSchedule gives such values)")

    def items_message(held: str = "") -> str:
        return (f"num_items_in_batch={float(num_items_in_batch):g} must be positive: it is the number of scored tokens "
                f"across the accumulated batch{held} (or pass None to average over this batch)")

    if isinstance(lam, Tensor):
        require(torch.all((lam >= 0) & (lam <= 1)), lam_message)
    elif not 0.0 <= float(lam) <= 1.0:
        raise InvalidValue(lam_message())
    if isinstance(num_items_in_batch, Tensor):
        n = num_items_in_batch
        scored = torch.ones((), dtype=torch.bool, device=n.device) if valid is None else valid.any().to(n.device)
        require(torch.all((n > 0) | ((n == 0) & ~scored)), items_message)
    elif num_items_in_batch is not None and float(num_items_in_batch) <= 0:
        if float(num_items_in_batch) < 0 or valid is None or bool(valid.any()):
            raise InvalidValue(items_message("" if valid is None else f", which holds {int(valid.sum())} here"))


@dataclass(frozen=True, kw_only=True)
class ScoringOptions:
    """How a head scores, fixed for a model or a run and validated once: built from the loss settings (``--loss.*``),
    from [`patch_causal_lm()`][hypros_lm.integrations.transformers.patch_causal_lm]'s keywords or from the loss API's, and kept
    where the head is; λ, the targets and what to return come with each call. The three entry points take these
    options under these names (tests/scoring/test_options.py)."""

    label_smoothing: float = 0.0
    """Label smoothing ε of the log-loss part, in [0, 1)."""
    score_smoothing: float = 0.0
    """Shao et al.'s (2024) score smoothing ε of the bounded part, in [0, 1): (1 − ε)·ℓ(p, y) + ε·(1/V)·Σ_j ℓ(p, j)
    − (ε/V)·Σ_j 1[p_j < ε/V]·log p_j."""
    z_loss: float = 0.0
    """Coefficient c of the z-loss c·lse² added to the score (PaLM used 1e-4); 0 turns it off."""
    chunk_size: int | None = None
    """Tokens per chunk of the fused head (None: as many as a 512 MiB working budget holds)."""

    def __post_init__(self) -> None:
        for name in ("label_smoothing", "score_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidValue(f"{name}={getattr(self, name)} must lie in [0, 1) (0 turns it off)")
        if not 0.0 <= float(self.z_loss) < float("inf"):
            raise InvalidValue(f"z_loss={self.z_loss} must be a finite coefficient ≥ 0 (e.g. 1e-4, as in PaLM); 0 turns "
                               f"it off")
        size = self.chunk_size
        if size is not None and (isinstance(size, bool) or int(size) != size or size < 1):
            raise InvalidValue(f"chunk_size={size!r} must be a whole number of tokens ≥ 1, or None for the default")


def require(condition: Tensor, message: Callable[[], str]) -> None:
    """Refuse input by a condition computed on the device, without waiting for it: an asynchronous device assert
    (``torch._assert_async``), so a training step never stops to read the device back. On the CPU it fails at once,
    and the ``message`` (built only then, when reading values costs nothing) comes as an
    [`InvalidValue`][hypros_lm.errors.InvalidValue]; on a GPU a failure stops the process at the next
    synchronisation with a device-side assert."""
    try:
        torch._assert_async(condition, "hypros_lm: invalid input to the fused head (see the traceback)")
    except RuntimeError:
        raise InvalidValue(message()) from None


DEFAULT_SCORING = ScoringOptions()
"""No label smoothing, no z-loss, the default chunking: a head's options where none are given."""


def fused_linear_score(
    hidden: Tensor, weight: Tensor, targets: Tensor, *, lam: float | Tensor, bounded: str | Score = "brier",
    alpha: float | None = None, bias: Tensor | None = None, ignore_index: int = -100, reduction: Reduction = "mean",
    num_items_in_batch: int | Tensor | None = None, options: ScoringOptions = DEFAULT_SCORING, logit_scale: float = 1.0,
    softcap: float | None = None, vocab_block_size: int | None = None, component_grad_norms: bool = False,
    grad_in_forward: bool = True, calibration_bins: int = 0, process_group: ProcessGroup | None = None,
    shard_sizes: Sequence[int] | None = None,
) -> ScoreOutput:
    """``(1 − λ)·log + λ·bounded`` (+ ``z_loss``·lse²) per token for the logits
    ``softcap·tanh(logit_scale·(hidden @ weight.T + bias)/softcap)``, without materialising the (N, V) logits,
    with the head's ``options`` (label smoothing, z-loss, chunking; validated when they were built).

    hidden: (..., d) final hidden states; weight: (V, d) LM-head weight; targets: (...) token ids
    or ``ignore_index``. λ may be a float or a 0-d tensor. ``reduction``: ``mean`` over the
    non-ignored tokens, ``sum``, or ``none`` (a (N,) tensor, 0 at ignored tokens); with
    ``num_items_in_batch`` the sum is divided by it instead (Hugging Face's normalisation over
    gradient-accumulation micro-batches). Returns a [`ScoreOutput`][hypros_lm.scoring.fused.ScoreOutput] whose components are
    means over the non-ignored tokens; ``component_grad_norms`` adds ‖∂L_log/∂h‖ and
    ‖∂L_bounded/∂h‖ (unweighted by λ) when gradients are being computed in forward; ``calibration_bins``
    (without gradients, i.e. in evaluation) adds the top-1 calibration bin sums.

    ``process_group``: the vocab-parallel head (hypros_lm.scoring.shards): ``weight`` (and ``bias``) are this rank's
    contiguous block of the vocabulary's rows, in rank order, ``hidden`` and ``targets`` (global token ids) the same on
    every rank; the blocks' sizes are gathered from the ranks (``shard_sizes``, if given, is checked against them).
    The loss and every component are the whole vocabulary's on every rank, ∂L/∂W (∂L/∂b) this rank's rows', ∂L/∂h
    the sum over the group.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    score = bounded_score(bounded, alpha)
    shard = None if process_group is None else vocab_shard(weight, process_group, hidden=hidden, bias=bias,
                                                          chunk_size=options.chunk_size, shard_sizes=shard_sizes)
    vocab = shard.vocab if shard else weight.shape[0]
    _check_inputs(hidden, weight, targets, ignore_index=ignore_index, bias=bias, reduction=reduction, softcap=softcap,
                  vocab=vocab)
    check_options(lam=lam, num_items_in_batch=num_items_in_batch, valid=targets != ignore_index)
    opts = _options(shard.widest if shard else vocab, lam=float(lam), bounded=score, ignore_index=ignore_index, shard=shard,
                    label_smoothing=float(options.label_smoothing), score_smoothing=float(options.score_smoothing),
                    chunk_size=options.chunk_size,
                    vocab_block_size=vocab_block_size, component_grad_norms=component_grad_norms,
                    z_loss=float(options.z_loss), logit_scale=float(logit_scale),
                    softcap=float(softcap) if softcap else None, keep_per_token_loss=reduction == "none")
    token_weight = _token_weights(targets != ignore_index, reduction, num_items_in_batch)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias))
    per_token_loss = reduction == "none"
    if calibration_bins and needs_grad:
        raise InvalidValue(f"calibration_bins={calibration_bins} asks for calibration from a pass that computes "
                           f"gradients, which keeps no per-token confidences; score under torch.no_grad() (evaluation) "
                           f"or pass calibration_bins=0")
    if needs_grad:
        loss, sums = _FusedLinearScore.apply(hidden, weight, bias, targets, token_weight, opts,
                                             grad_in_forward and not per_token_loss)
    else:
        collected: dict[str, list[Tensor]] | None = {} if per_token_loss or calibration_bins else None
        sums, _ = score_pass(hidden, (weight, bias), targets, token_weight, opts, want_grad=False, per_token=collected)
        loss = torch.cat(collected["loss"]) if per_token_loss else sums["weighted"]
        if calibration_bins:
            valid = targets != ignore_index
            sums["calibration"] = bin_sums(torch.cat(collected["confidence"])[valid],
                                           torch.cat(collected["correct"])[valid], calibration_bins).stacked()
    denom = sums["n_tokens"].clamp(min=1).float()
    norms = sums["comp_norms"] if (needs_grad and component_grad_norms and grad_in_forward) else None
    means = {k: sums[k] / denom for k in ("log", "bounded", "accuracy", "entropy")}
    scores = {**{s.key: sums[s.key] / denom for s in REPORTED}, score.key: means["bounded"]}
    return ScoreOutput(
        loss=loss, **means, scores=scores, n_tokens=sums["n_tokens"], grad_norm_log=None if norms is None else norms[0],
        grad_norm_bounded=None if norms is None else norms[1], z_loss=sums["z_loss"] / denom if options.z_loss else None,
        calibration=sums.get("calibration"),
    )


def _token_weights(valid: Tensor, reduction: str, num_items_in_batch: int | Tensor | None) -> Tensor:
    """w_i of the loss Σ_i w_i·ℓ_i: 1/n_valid (mean), 1 (sum, none) or 1/num_items_in_batch; 0 where ignored."""
    w = valid.double()  # cast to the statistics' dtype later: 1/n stays exact in float64 runs
    if num_items_in_batch is not None:
        # clamped: a count of 0 is allowed only where no token is scored (check_options), and then 0/1 is the loss
        return w / torch.as_tensor(num_items_in_batch, device=w.device).double().clamp(min=1)
    if reduction == "mean":
        return w / valid.sum().clamp(min=1).double()
    return w


@torch.no_grad()
def token_scores(
    hidden: Tensor, weight: Tensor, targets: Tensor, *, bias: Tensor | None = None, ignore_index: int = -100,
    logit_scale: float = 1.0, softcap: float | None = None, chunk_size: int | None = None,
    vocab_block_size: int | None = None, bounded: str | Score = "brier", alpha: float | None = None,
) -> dict[str, Tensor]:
    """Per-token scores for evaluation, from the same chunked pass (no N×V tensor, no gradients).

    Returns 1-D tensors over the non-ignored tokens: ``log`` (NLL), each reported score by its key (``brier``,
    ``spherical``) and the ``bounded`` score asked for (registered name and ``alpha``) under its key too,
    ``entropy``, ``confidence`` (top-1 probability) and ``correct`` (1 if the target is the top-1).
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    _check_inputs(hidden, weight, targets, ignore_index=ignore_index, bias=bias, reduction="none", softcap=softcap,
                  vocab=weight.shape[0])
    opts = _options(weight.shape[0], lam=0.0, bounded=bounded_score(bounded, alpha), ignore_index=ignore_index,
                    label_smoothing=0.0,
                    chunk_size=chunk_size, vocab_block_size=vocab_block_size, component_grad_norms=False,
                    logit_scale=float(logit_scale), softcap=float(softcap) if softcap else None)
    collected: dict[str, list[Tensor]] = {}
    valid = targets != ignore_index
    score_pass(hidden, (weight, bias), targets, valid.double(), opts, want_grad=False, per_token=collected)
    collected[opts.bounded.key] = collected.pop("bounded")
    return {k: torch.cat(v)[valid] for k, v in collected.items()}


def _check_inputs(
    hidden: Tensor, weight: Tensor, targets: Tensor, *, ignore_index: int, bias: Tensor | None, reduction: str,
    softcap: float | None, vocab: int,
) -> None:
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[1]:
        raise InvalidValue(f"weight has shape {tuple(weight.shape)}; expected (V, {hidden.shape[1]}) to match hidden")
    if weight.numel() == 0:
        raise InvalidValue("the head weight is empty: under ZeRO-3 or FSDP a parameter read outside its module's "
                           "forward is an unfilled shard; call the loss inside the head's forward (see "
                           "hypros_lm.integrations.transformers.patch_causal_lm)")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise InvalidValue(f"bias has shape {tuple(bias.shape)}; expected ({weight.shape[0]},), one per vocabulary row")
    if targets.shape[0] != hidden.shape[0]:
        raise InvalidValue(f"{targets.shape[0]} targets for {hidden.shape[0]} hidden states; they must match")
    if reduction not in ("mean", "sum", "none"):
        raise InvalidValue(f"reduction={reduction!r}; use 'mean', 'sum' or 'none'")
    if softcap is not None and not softcap > 0:
        raise InvalidValue(f"softcap={softcap} must be positive (or None for no soft-capping)")
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= vocab))
    require(~bad.any(), lambda: f"target id {int(targets[bad][0])} is outside the vocabulary [0, {vocab}) "
            f"and is not ignore_index={ignore_index}; check the tokenizer's vocabulary against the model's")

