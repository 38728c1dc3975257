"""The loss registry: a training objective is a bounded score plus a λ schedule.

``--loss NAME`` picks an entry; the schedule's parameters come from [`LossSettings`][hypros_lm.scoring.losses.LossSettings]
(fractions of the run length T where the method states them that way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypros_lm.errors import InvalidValue
from hypros_lm.scoring.fused import ScoringOptions
from hypros_lm.scoring.schedules import Schedule, make_schedule
from hypros_lm.scoring.scores import Score, bounded_score


@dataclass(kw_only=True)
class LossSettings:
    name: str = "hypros"
    """Objective from LOSSES: log, brier, spherical, bounded, hypros, hypros-spherical, hypros-fixed,
    hypros-linear, hypros-noanneal, log-then-brier."""
    bounded: str = "brier"
    """Registered bounded score mixed with log-loss by the hypros-* objectives (and trained alone by ``bounded``):
    brier, spherical, or a family of order ``alpha``: power, pseudo-spherical."""
    alpha: float | None = None
    """Order α > 1 of a bounded family (None: the family's 2, i.e. Brier or spherical)."""
    t0: float = 0.3
    """sigmoid: centre T0 as a fraction of max_steps (λ(T0) = lam_max/2)."""
    tau: float = 0.1
    """sigmoid: width τ as a fraction of max_steps; must be > 0."""
    lam_max: float = 1.0
    """Largest λ of the sigmoid, linear, noanneal and step schedules."""
    lam_fixed: float = 0.5
    """λ of hypros-fixed."""
    linear_start: float = 0.0
    """hypros-linear: fraction of max_steps where λ leaves 0."""
    linear_end: float = 0.6
    """hypros-linear: fraction of max_steps where λ reaches lam_max (0.6 = the sigmoid's T0 + 3τ)."""
    peak: float = 0.5
    """hypros-noanneal: fraction of max_steps where λ peaks before returning to 0 at the end."""
    switch: float = 0.5
    """log-then-brier: fraction of max_steps where log-loss switches to Brier."""
    label_smoothing: float = 0.0
    """Label smoothing ε of the log-loss part, in [0, 1)."""
    score_smoothing: float = 0.0
    """Shao et al.'s (2024) score smoothing ε of the bounded part, in [0, 1); 0 turns it off."""
    z_loss: float = 0.0
    """Coefficient c of the z-loss c·lse² added to the score (PaLM used 1e-4); 0 turns it off."""
    chunk_size: int | None = None
    """Tokens per chunk of the fused head (None: as many as a 512 MiB working budget holds)."""

    def options(self) -> ScoringOptions:
        """The fused head's options of this run (ScoringOptions' fields are these settings' own)."""
        return ScoringOptions(**{name: getattr(self, name) for name in ScoringOptions.__dataclass_fields__})

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise InvalidValue(f"unknown loss {self.name!r}; choose one of {sorted(LOSSES)}")
        if self.tau <= 0:
            raise InvalidValue(f"loss.tau={self.tau} must be > 0 (a fraction of max_steps, e.g. 0.1)")
        for field in ("t0", "linear_start", "linear_end", "peak", "switch"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise InvalidValue(
                    f"loss.{field}={value} lies outside the run: it is a fraction of max_steps in [0, 1]"
                )
        if not 0.0 <= self.lam_max <= 1.0 or not 0.0 <= self.lam_fixed <= 1.0:
            raise InvalidValue(f"λ must lie in [0, 1]; got lam_max={self.lam_max}, lam_fixed={self.lam_fixed}")
        if self.linear_end <= self.linear_start:
            raise InvalidValue(f"loss.linear_end={self.linear_end} must exceed linear_start={self.linear_start}")
        if not 0.0 < self.peak < 1.0:
            raise InvalidValue(f"loss.peak={self.peak} must lie strictly inside (0, 1)")
        try:
            self.options()
            bounded_score(self.bounded, self.alpha)
        except ValueError as err:
            raise InvalidValue(f"loss.{err}") from None


@dataclass(frozen=True)
class Objective:
    """What the scoring head needs at each step: the bounded score and λ(step)."""

    name: str
    bounded: Score
    schedule: Schedule


def _sigmoid(s: LossSettings, total: int) -> Schedule:
    return make_schedule("sigmoid", t0=s.t0 * total, tau=s.tau * total, lam_max=s.lam_max)


def _partner(s: LossSettings) -> Score:
    return bounded_score(s.bounded, s.alpha)


LOSSES: dict[str, Callable[[LossSettings, int], tuple[Score, Schedule]]] = {
    "log": lambda s, T: (_partner(s), make_schedule("constant", lam=0.0)),
    "brier": lambda s, T: (bounded_score("brier"), make_schedule("constant", lam=1.0)),
    "spherical": lambda s, T: (bounded_score("spherical"), make_schedule("constant", lam=1.0)),
    "bounded": lambda s, T: (_partner(s), make_schedule("constant", lam=1.0)),
    "hypros": lambda s, T: (_partner(s), _sigmoid(s, T)),
    "hypros-spherical": lambda s, T: (bounded_score("spherical"), _sigmoid(s, T)),
    "hypros-fixed": lambda s, T: (_partner(s), make_schedule("constant", lam=s.lam_fixed)),
    "hypros-linear": lambda s, T: (
        _partner(s),
        make_schedule("linear", start=s.linear_start * T, end=s.linear_end * T, lam0=0.0, lam1=s.lam_max),
    ),
    "hypros-noanneal": lambda s, T: (_partner(s), make_schedule("noanneal", peak=s.peak * T, total=T, lam_max=s.lam_max)),
    "log-then-brier": lambda s, T: (bounded_score("brier"), make_schedule("step", switch=s.switch * T, lam_max=s.lam_max)),
}


def build_objective(settings: LossSettings, total_steps: int) -> Objective:
    """Resolve a loss name and its settings into the bounded score and λ schedule for a run of T steps."""
    if total_steps <= 0:
        raise InvalidValue(f"max_steps={total_steps} must be positive")
    bounded, schedule = LOSSES[settings.name](settings, total_steps)
    return Objective(name=settings.name, bounded=bounded, schedule=schedule)
