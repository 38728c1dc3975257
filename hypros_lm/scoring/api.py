"""The public loss API: HyProS and the other scoring rules in any training script.

Three pieces, importable with torch alone (``from hypros_lm import ...``):

- [`linear_scoring_loss()`][hypros_lm.scoring.api.linear_scoring_loss]: the fused head loss with
``F.linear_cross_entropy``'s argument order
  (hidden states, head weight, targets), keyword-only options after that;
- [`LinearScoringLoss`][hypros_lm.scoring.api.LinearScoringLoss]: the same as an ``nn.Module`` that can hold a λ schedule;
- [`LambdaSchedule`][hypros_lm.scoring.api.LambdaSchedule]: ``schedule(step) -> λ`` for a named objective and a run of ``total_steps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.distributed import ProcessGroup

from hypros_lm.errors import InvalidValue
from hypros_lm.scoring.fused import Reduction, ScoreOutput, ScoringOptions, fused_linear_score
from hypros_lm.scoring.losses import LOSSES, LossSettings, build_objective
from hypros_lm.scoring.scores import ALIASES, FAMILIES, Score, bounded_score

SCORES: dict[str, tuple[str | None, float | None]] = {
    "log": (None, 0.0),
    "hypros": (None, None),
    "hypros-spherical": ("spherical", None),
    **{name: (name, 1.0) for name in (*ALIASES, *FAMILIES)},
}
"""The ``score`` names of [`linear_scoring_loss()`][hypros_lm.scoring.api.linear_scoring_loss]: score -> (the bounded
score, λ). The bounded score None is the ``bounded=`` keyword's (default ``brier``); λ None is the caller's (a mixture
``(1 − λ)·log + λ·bounded``). Every registered score and family (`hypros_lm.scoring.scores`) is a name here, λ = 1."""


def _resolve_score(score: str, lam: float | Tensor | None, bounded: str | None = None,
                   alpha: float | None = None) -> tuple[Score, float | Tensor]:
    if score not in SCORES:
        raise InvalidValue(f"score={score!r} is not known; use one of {sorted(SCORES)} "
                           f"(a schedule such as 'hypros-linear' is a LambdaSchedule: pass its λ with score='hypros')")
    named, fixed = SCORES[score]
    if named is not None and bounded is not None and bounded != named:
        raise InvalidValue(f"score={score!r} is {named}; bounded={bounded!r} applies to score='hypros'")
    partner = bounded_score(named or bounded or "brier", alpha)
    if fixed is None:
        if lam is None:
            raise InvalidValue(f"score={score!r} mixes log-loss and {partner.key}: give lam= (λ in [0, 1], e.g. "
                               f"LambdaSchedule('hypros', total_steps=T)(step))")
        if not isinstance(lam, Tensor) and not 0.0 <= float(lam) <= 1.0:
            raise InvalidValue(f"lam={lam} must lie in [0, 1]")
        return partner, lam
    if lam is not None and float(lam) != fixed:
        raise InvalidValue(f"score={score!r} is λ = {fixed}; for another λ use score='hypros' with bounded=")
    return partner, fixed


def linear_scoring_loss(
    input: Tensor,  # noqa: A002 - the name F.linear_cross_entropy uses
    linear_weight: Tensor,
    target: Tensor,
    *,
    score: str = "hypros",
    lam: float | Tensor | None = None,
    bounded: str | None = None,
    alpha: float | None = None,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    score_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    logit_scale: float = 1.0,
    num_items_in_batch: int | Tensor | None = None,
    return_components: bool = False,
    chunk_size: int | None = None,
    process_group: ProcessGroup | None = None,
    shard_sizes: Sequence[int] | None = None,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """A proper scoring rule (or a HyProS mixture) of the LM head's logits, fused with the head.

    The logits ``softcap·tanh(logit_scale·(input @ linear_weight.T + bias)/softcap)`` are never
    materialised: the vocabulary is walked chunk by chunk and gradients are exact.

    Args:
        input: (..., d) final hidden states. linear_weight: (V, d) head weight. target: (...) token
            ids, already aligned with ``input`` (shift causal-LM labels yourself), or ``ignore_index``.
        score: ``log``, a registered score (``brier``, ``spherical``) or family (``power``, ``pseudo-spherical``,
            of order ``alpha``) alone, or ``hypros`` / ``hypros-spherical`` (``(1 − lam)·log + lam·bounded``;
            ``lam`` required).
        bounded: the registered bounded score ``hypros`` mixes in (default ``brier``), e.g. ``"power"``.
        alpha: a bounded family's order α > 1 (e.g. ``bounded="power", alpha=3``).
        reduction: ``mean`` over non-ignored tokens, ``sum``, or ``none`` (per token, 0 where ignored).
        num_items_in_batch: divide the sum by this instead (Hugging Face's normalisation, so that
            gradient accumulation gives the gradients of one large batch).
        z_loss: coefficient of the stabiliser lse² (PaLM, OLMo), added per token.
        score_smoothing: Shao et al.'s (2024) smoothing ε of the bounded score (``ScoringOptions.score_smoothing``).
        process_group: the vocab-parallel head: ``linear_weight`` (and ``bias``) are this rank's contiguous block of
            the vocabulary's rows in rank order, ``input`` and ``target`` (global ids) the same on every rank; ∂W
            stays on the shard, ∂input is summed over the group (``fused_linear_score``; ``shard_sizes`` optional).
        return_components: also return detached means over the non-ignored tokens: ``log``,
            each reported score and the bounded one by key, ``entropy``, ``accuracy``, ``n_tokens`` (and
            ``z_loss``).
    """
    partner, lam_value = _resolve_score(score, lam, bounded, alpha)
    out = fused_linear_score(
        input, linear_weight, target, lam=lam_value, bounded=partner, bias=bias, ignore_index=ignore_index,
        reduction=reduction, num_items_in_batch=num_items_in_batch, logit_scale=logit_scale, softcap=softcap,
        options=ScoringOptions(label_smoothing=label_smoothing, score_smoothing=score_smoothing, z_loss=z_loss,
                               chunk_size=chunk_size), process_group=process_group, shard_sizes=shard_sizes,
    )
    return (out.loss, components_of(out)) if return_components else out.loss


def components_of(out: ScoreOutput) -> dict[str, Tensor]:
    """The detached component means of a scoring pass, named as the public API reports them."""
    parts = {"log": out.log, **out.scores, "entropy": out.entropy, "accuracy": out.accuracy, "n_tokens": out.n_tokens}
    if out.z_loss is not None:
        parts["z_loss"] = out.z_loss
    return parts


class LambdaSchedule:
    """λ(step) of a named objective over a run of ``total_steps`` optimizer steps.

    ``LambdaSchedule("hypros", total_steps=T)`` is the sigmoid λ = lam_max·sigmoid((t − t0·T)/(tau·T));
    the other names are those of ``--loss`` (log, brier, spherical, hypros-spherical, hypros-fixed,
    hypros-linear, hypros-noanneal, log-then-brier), their parameters keyword arguments as fractions of T
    (``t0``, ``tau``, ``lam_max``, ``lam_fixed``, ``linear_start``, ``linear_end``, ``peak``, ``switch``).
    λ is a pure function of the step, so a resumed run needs no saved state.
    """

    def __init__(self, loss: str = "hypros", *, total_steps: int, **params: float):
        if loss not in LOSSES:
            raise InvalidValue(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
        allowed = set(LossSettings.__dataclass_fields__) - {"name", *ScoringOptions.__dataclass_fields__}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise InvalidValue(f"unknown schedule parameter(s) {unknown}; known: {sorted(allowed)}")
        self.name, self.total_steps = loss, int(total_steps)
        self._objective = build_objective(LossSettings(name=loss, **params), self.total_steps)

    @property
    def bounded(self) -> Score:
        """The registered bounded score λ weighs (``LossSettings.bounded`` and ``alpha``)."""
        return self._objective.bounded

    @property
    def score(self) -> str:
        """The [`linear_scoring_loss()`][hypros_lm.scoring.api.linear_scoring_loss] score that takes this schedule's λ
        (with ``bounded=self.bounded``)."""
        return "hypros"

    def __call__(self, step: int) -> float:
        return float(self._objective.schedule(int(step)))

    def __repr__(self) -> str:
        return f"LambdaSchedule({self.name!r}, total_steps={self.total_steps})"


class LinearScoringLoss(nn.Module):
    """[`linear_scoring_loss()`][hypros_lm.scoring.api.linear_scoring_loss] as a module, with a fixed λ or a
    [`LambdaSchedule`][hypros_lm.scoring.api.LambdaSchedule].

    ``loss_fn = LinearScoringLoss(schedule=LambdaSchedule("hypros", total_steps=T))`` then
    ``loss_fn(hidden, head.weight, targets, step=it)``; or ``LinearScoringLoss("brier")``.
    The last call's component means are kept in ``last_components``.
    Under ZeRO-3 or FSDP call it inside the head module's forward (a weight read outside is an empty
    shard), or use [`hypros_lm.integrations.transformers.patch_causal_lm()`][hypros_lm.integrations.transformers.patch_causal_lm].
    """

    # the keywords of linear_scoring_loss a module holds (the rest come with each call)
    OPTIONS = ("bounded", "alpha", "ignore_index", "reduction", "label_smoothing", "score_smoothing", "z_loss",
               "softcap", "logit_scale", "chunk_size", "process_group", "shard_sizes")

    def __init__(self, score: str | None = None, *, lam: float | None = None, schedule: LambdaSchedule | None = None,
                 **options: Any):
        """``options``: any of OPTIONS, as in [`linear_scoring_loss()`][hypros_lm.scoring.api.linear_scoring_loss]."""
        super().__init__()
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise TypeError(f"LinearScoringLoss got unknown option(s) {unknown}; it takes {list(self.OPTIONS)}")
        if schedule is not None and (score is not None or lam is not None):
            raise InvalidValue("give either schedule= or score= (with lam=), not both: the schedule names the score")
        self.schedule = schedule
        self.score = schedule.score if schedule is not None else (score or "hypros")
        self.lam = lam
        if schedule is not None:
            options["bounded"] = schedule.bounded
        else:
            _resolve_score(self.score, lam, options.get("bounded"), options.get("alpha"))  # fail now, not at step 1
        self.options = options
        self.last_components: dict[str, Tensor] = {}

    def forward(
        self,
        input: Tensor,  # noqa: A002
        linear_weight: Tensor,
        target: Tensor,
        *,
        bias: Tensor | None = None,
        step: int | None = None,
        num_items_in_batch: int | Tensor | None = None,
    ) -> Tensor:
        lam = self.lam
        if self.schedule is not None:
            if step is None:
                raise InvalidValue("this loss follows a LambdaSchedule: pass step= (the optimizer step)")
            lam = self.schedule(step)
        loss, self.last_components = linear_scoring_loss(
            input, linear_weight, target, score=self.score, lam=lam, bias=bias, num_items_in_batch=num_items_in_batch,
            return_components=True, **self.options,
        )
        return loss

    def extra_repr(self) -> str:
        return f"score={self.score!r}, schedule={self.schedule!r}, lam={self.lam}"


__all__ = ["SCORES", "LambdaSchedule", "LinearScoringLoss", "components_of", "linear_scoring_loss"]
