"""The score registry: every proper scoring rule the fused head computes, one object each.

A score is a loss ℓ(p, y) of the softmax p = softmax(z) of one row of logits and its target y. The fused head
never holds p: it keeps per-row statistics of the logits (``RowStats``: the max m, S1 = Σe, the power sums
S_α = Σe^α with e = e^(z − m), z_y) and asks each score for

- its value from those statistics (``value``);
- its logit gradient in the form G = Σ_k a_k·p^k + c·1_y, a few powers k with per-row coefficients a_k and c
  (``gradient``): the kernel forms each p^k elementwise, so one tile pass serves every score;
- for Shao et al.'s score smoothing (2024), the mean of its value over every target, ū = (1/V)·Σ_j ℓ(p, j), and
  that mean's gradient (``uniform``, ``uniform_gradient``);
- its float64 value on full logits (``reference``), the independent definition the kernel is tested against.

The two families of Gneiting & Raftery (2007), strictly proper for every α > 1, are written as losses scaled by
1/(α − 1), so that the α = 2 members are today's Brier score and spherical score exactly and both tend to the log
score as α → 1:

    power:             ℓ_α = (1 − α·p_y^(α−1) + (α − 1)·Σp^α) / (α − 1)        (α = 2: 1 − 2p_y + Σp², Brier)
    pseudo-spherical:  ℓ_α = (1 − (p_y / ‖p‖_α)^(α−1)) / (α − 1)                (α = 2: 1 − p_y/‖p‖₂, spherical)

With A = Σp^α, their logit gradients are

    ∂ℓ_power/∂z  = α·(p_y^(α−1) − A)·p + α·p^α − α·p_y^(α−1)·1_y
    ∂ℓ_pseudo/∂z = S·(p^α / A − 1_y),   S = (p_y / ‖p‖_α)^(α−1).

Adding a score is one class here (its value, gradient coefficients and reference) and a line in ``FAMILIES``;
the kernel, the loss API, ``--loss.bounded``, the patch and the evaluation take it from there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hypros_lm.errors import InvalidValue


@dataclass
class RowStats:
    """The per-row statistics of a chunk of logits every score is computed from (the kernel fills them)."""

    m: Tensor
    """The row's max logit."""
    s1: Tensor
    """Σ_v e^(z_v − m)."""
    z_y: Tensor
    """The target's logit."""
    power_sums: dict[float, Tensor] = field(default_factory=dict)
    """α -> Σ_v e^(α·(z_v − m)) for each α the scores in use need."""
    vocab: int = 0
    """V, the number of outcomes (for the smoothing's mean over targets)."""

    @property
    def lse(self) -> Tensor:
        return self.m + torch.log(self.s1)

    @property
    def log(self) -> Tensor:
        """−log p_y."""
        return self.lse - self.z_y

    def p_y(self) -> Tensor:
        return torch.exp(self.z_y - self.m) / self.s1

    def sum_p_power(self, alpha: float) -> Tensor | float:
        """A = Σ p^α = S_α / S1^α (1 at α = 1)."""
        return 1.0 if alpha == 1.0 else self.power_sums[alpha] / self.s1 ** alpha


Terms = dict[float, Tensor | float]
"""k -> a_k of the elementwise part Σ_k a_k·p^k of a logit gradient, per row."""
Gradient = tuple[Terms, Tensor | float]
"""(the elementwise terms, c) of G = Σ_k a_k·p^k + c·1_y."""


@dataclass(frozen=True)
class Score:
    """A bounded proper score of the fused head: a family member of order α > 1."""

    alpha: float = 2.0
    family = ""

    def __post_init__(self) -> None:
        alpha = float(self.alpha)
        if not (1.0 < alpha < math.inf):
            raise InvalidValue(f"alpha={float(self.alpha)!r}: the {self.family} score is strictly proper for every finite "
                               f"α > 1 (2 gives {ALIASES_BY_FAMILY[self.family]!r}; α → 1 tends to the log score)")
        object.__setattr__(self, "alpha", alpha)

    def __str__(self) -> str:
        return self.key

    @property
    def key(self) -> str:
        """The score's name in reports and telemetry: the alias of its α = 2 member, else ``family-α``."""
        if self.alpha == 2.0:
            return ALIASES_BY_FAMILY[self.family]
        return f"{self.family}-{self.alpha:g}"

    @property
    def bounds(self) -> tuple[float, float]:
        raise NotImplementedError

    def value(self, r: RowStats) -> Tensor:
        raise NotImplementedError

    def gradient(self, r: RowStats) -> Gradient:
        raise NotImplementedError

    def uniform(self, r: RowStats) -> Tensor:
        """ū = (1/V)·Σ_j ℓ(p, j), the score's mean over every target."""
        raise NotImplementedError

    def uniform_gradient(self, r: RowStats) -> Terms:
        raise NotImplementedError

    def reference(self, logits: Tensor, targets: Tensor) -> Tensor:
        """ℓ per row of full (N, V) logits, in float64, from the definition (autograd gives its gradient)."""
        raise NotImplementedError

    @staticmethod
    def _probabilities(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """p = softmax(logits) in float64 and each row's p_y, for the references."""
        p = torch.softmax(logits.double(), -1)
        return p, p.gather(1, targets[:, None]).squeeze(1)


@dataclass(frozen=True)
class Power(Score):
    """ℓ_α = (1 − α·p_y^(α−1) + (α − 1)·Σp^α)/(α − 1), in [0, α/(α − 1)]; α = 2 is the Brier score."""

    family = "power"

    @property
    def bounds(self) -> tuple[float, float]:
        return 0.0, self.alpha / (self.alpha - 1.0)

    def value(self, r: RowStats) -> Tensor:
        a, k = self.alpha, self.alpha - 1.0
        if a == 2.0:
            return 1 - 2 * r.p_y() + r.sum_p_power(2.0)
        # (1 − p_y^k)/k − p_y^k + A, with 1 − p_y^k = −expm1(−k·log): no cancellation as α → 1
        return -torch.expm1(-k * r.log) / k - torch.exp(-k * r.log) + r.sum_p_power(a)

    def gradient(self, r: RowStats) -> Gradient:
        a = self.alpha
        p_k = r.p_y() if a == 2.0 else torch.exp(-(a - 1.0) * r.log)
        return {1.0: a * (p_k - r.sum_p_power(a)), a: a}, -a * p_k

    def uniform(self, r: RowStats) -> Tensor:
        """(1 − α/V·Σp^(α−1) + (α − 1)·Σp^α)/(α − 1)."""
        a = self.alpha
        return (1 - a / r.vocab * r.sum_p_power(a - 1.0) + (a - 1.0) * r.sum_p_power(a)) / (a - 1.0)

    def uniform_gradient(self, r: RowStats) -> Terms:
        a = self.alpha
        return merged_terms({1.0: a * (r.sum_p_power(a - 1.0) / r.vocab - r.sum_p_power(a)), a: a}, {a - 1.0: -a / r.vocab})

    def reference(self, logits: Tensor, targets: Tensor) -> Tensor:
        p, p_y = self._probabilities(logits, targets)
        a = self.alpha
        return (1 - a * p_y ** (a - 1) + (a - 1) * (p ** a).sum(-1)) / (a - 1)


@dataclass(frozen=True)
class PseudoSpherical(Score):
    """ℓ_α = (1 − (p_y/‖p‖_α)^(α−1))/(α − 1), in [0, 1/(α − 1)]; α = 2 is the spherical score."""

    family = "pseudo-spherical"

    @property
    def bounds(self) -> tuple[float, float]:
        return 0.0, 1.0 / (self.alpha - 1.0)

    def _log_ratio(self, r: RowStats) -> Tensor:
        """log(p_y/‖p‖_α) = (z_y − m) − log(S_α)/α (S1 cancels)."""
        return (r.z_y - r.m) - torch.log(r.power_sums[self.alpha]) / self.alpha

    def _ratio_power(self, r: RowStats) -> Tensor:
        """S = (p_y/‖p‖_α)^(α−1)."""
        if self.alpha == 2.0:
            return torch.exp(r.z_y - r.m) / torch.sqrt(r.power_sums[2.0])
        return torch.exp((self.alpha - 1.0) * self._log_ratio(r))

    def value(self, r: RowStats) -> Tensor:
        k = self.alpha - 1.0
        if self.alpha == 2.0:
            return 1 - self._ratio_power(r)
        return -torch.expm1(k * self._log_ratio(r)) / k

    def gradient(self, r: RowStats) -> Gradient:
        s = self._ratio_power(r)
        return {self.alpha: s / r.sum_p_power(self.alpha)}, -s

    def _norm_power(self, r: RowStats) -> Tensor:
        """‖p‖_α^(α−1)."""
        return r.sum_p_power(self.alpha) ** ((self.alpha - 1.0) / self.alpha)

    def uniform(self, r: RowStats) -> Tensor:
        """(1 − Σp^(α−1)/(V·‖p‖_α^(α−1)))/(α − 1)."""
        return (1 - r.sum_p_power(self.alpha - 1.0) / (r.vocab * self._norm_power(r))) / (self.alpha - 1.0)

    def uniform_gradient(self, r: RowStats) -> Terms:
        a, n = self.alpha, self._norm_power(r)
        return merged_terms({a: r.sum_p_power(a - 1.0) / (n * r.vocab * r.sum_p_power(a))}, {a - 1.0: -1.0 / (r.vocab * n)})

    def reference(self, logits: Tensor, targets: Tensor) -> Tensor:
        p, p_y = self._probabilities(logits, targets)
        a = self.alpha
        norm = (p ** a).sum(-1) ** (1 / a)
        return (1 - (p_y / norm) ** (a - 1)) / (a - 1)


def merged_terms(*parts: Terms) -> Terms:
    """The sum of gradient terms, like powers added (at α = 2, p^(α−1) is p)."""
    out: Terms = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out[k] + v if k in out else v
    return out


def smoothed_reference(score: Score, logits: Tensor, targets: Tensor, epsilon: float) -> Tensor:
    """Shao et al.'s (2024) score smoothing on full probabilities, per row, in float64:
    (1 − ε)·ℓ(p, y) + ε·(1/V)·Σ_j ℓ(p, j) − (ε/V)·Σ_j 1[p_j < ε/V]·log p_j."""
    logp = torch.log_softmax(logits.double(), -1)
    v = logits.shape[-1]
    every = torch.stack([score.reference(logits, torch.full_like(targets, j)) for j in range(v)], -1)
    penalty = -(epsilon / v) * (logp * (logp.exp() < epsilon / v)).sum(-1)
    return (1 - epsilon) * score.reference(logits, targets) + epsilon * every.mean(-1) + penalty


FAMILIES: dict[str, type[Score]] = {"power": Power, "pseudo-spherical": PseudoSpherical}
"""The registered bounded score families, by the name ``--loss.bounded`` takes."""

ALIASES: dict[str, tuple[str, float]] = {"brier": ("power", 2.0), "spherical": ("pseudo-spherical", 2.0)}
"""Names of single members: name -> (family, α)."""

ALIASES_BY_FAMILY = {family: name for name, (family, _) in ALIASES.items()}

DEFAULT_BOUNDED = "brier"
"""The bounded score HyProS mixes in where none is named (the HyProS proposal's)."""

REPORTED: tuple[Score, ...] = tuple(FAMILIES[family](alpha) for family, alpha in ALIASES.values())
"""The scores every evaluation reports beside NLL and ECE (the α = 2 members: they need no statistic beyond Σe²)."""


def bounded_score(name: str | Score, alpha: float | None = None) -> Score:
    """The registered score ``name`` (a family or an alias) of order ``alpha`` (a family's default: 2)."""
    if isinstance(name, Score):
        if alpha is not None and float(alpha) != name.alpha:
            raise InvalidValue(f"alpha={alpha} contradicts the score given, {name.key} (α = {name.alpha:g})")
        return name
    if name in ALIASES:
        family, fixed = ALIASES[name]
        if alpha is not None and float(alpha) != fixed:
            raise InvalidValue(f"bounded={name!r} is the {family} score at α = {fixed:g}; for α = {alpha} use "
                               f"bounded={family!r} with alpha={alpha}")
        return FAMILIES[family](fixed)
    if name in FAMILIES:
        return FAMILIES[name](2.0 if alpha is None else alpha)
    raise InvalidValue(f"bounded={name!r} is not a registered score; use one of "
                       f"{sorted([*ALIASES, *FAMILIES])} (a family takes alpha > 1)")


def scores_in_use(bounded: Score) -> tuple[Score, ...]:
    """The reported scores and the run's own bounded score, once each."""
    return tuple(dict.fromkeys((*REPORTED, bounded)))


def power_sums_needed(bounded: Score, *, smoothing: bool = False) -> tuple[float, ...]:
    """The α of every power sum S_α the scores in use need (2 for the reported ones; α − 1 for the smoothing), but
    1 (S1, always kept)."""
    wanted = {s.alpha for s in scores_in_use(bounded)} | ({bounded.alpha - 1.0} if smoothing else set())
    return tuple(sorted(wanted - {1.0}))


def from_key(key: str) -> Score | None:
    """The score a report key names (``brier``, ``power-3``), or None if it names none."""
    if key in ALIASES:
        return bounded_score(key)
    family, _, alpha = key.rpartition("-")
    try:
        return FAMILIES[family](float(alpha)) if family in FAMILIES else None
    except ValueError:
        return None


def score_keys(keys: Iterable[str], prefix: str = "loss_") -> list[str]:
    """The score keys among ``keys`` that are ``prefix`` + a registered score's key (the reported ones first),
    without the prefix: what a record or table holds of each score."""
    found = [k[len(prefix):] for k in keys if k.startswith(prefix) and from_key(k[len(prefix):]) is not None]
    order = [s.key for s in REPORTED]
    return sorted(found, key=lambda k: (order.index(k) if k in order else len(order), k))
