"""A study file's sections as plain dataclasses (as the run settings are): ``target``, ``timing``, ``scaling`` (with
its ``lr`` rule), ``sweep``, ``baselines`` and ``criteria``. [`section()`][hypros_lm.studies.sections.section] builds
one from its mapping and names an unknown key (with a did-you-mean) or a bad value in one line, before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypros_lm.config import coerce
from hypros_lm.errors import InvalidValue

T = TypeVar("T")

METRICS = ("nll", "brier", "ece_10", "accuracy", "auc", "bleu", "chrf", "rouge1_f", "rouge2_f", "rougeL_f")
"""The test metrics a study compares (the results' keys)."""

DEFAULT_MARGINS = {"nll": 0.02, "brier": 0.005, "ece_10": 0.005, "accuracy": 0.01, "auc": 0.02, "bleu": 0.5,
                   "chrf": 0.5, "rouge1_f": 0.5, "rouge2_f": 0.5, "rougeL_f": 0.5}
"""How much worse a method may be and still be "no worse" (C3's non-inferiority, C5's tolerance), in each metric's
units: 0.02 nats per token (about 2 % perplexity), half a BLEU / chrF / ROUGE point, one accuracy point, 0.005 of
Brier and ECE. A study file sets its own under ``criteria: {margins: {...}}``; the report prints the one used."""


@dataclass(frozen=True)
class Target:
    """The validation level whose time-to-target C2 compares."""

    metric: str = "loss_log"
    value: float | None = None
    """None: the log-loss baseline's own mean final value at each model size (the proposal's "matched performance,
    faster"): a level only the better half of the baseline's runs reach, so reaching it sooner means something."""


@dataclass(frozen=True)
class Timing:
    """After the runs, the method's and log-loss's steps alternated in one process per model (what C1 reads)."""

    steps: int = 12

    def check(self, where: str) -> None:
        if self.steps < 3:
            raise InvalidValue(f"{where}.steps={self.steps}: time at least 3 steps of each (e.g. 12)")


@dataclass(frozen=True)
class LrRule:
    """lr(N) = value·(N/reference)^−exponent, N the model's total parameters."""

    reference: float
    value: float
    exponent: float
    sweep: str | None = None
    """The learning-rate sweep study whose report gives this rule (required of an objective's own rule)."""

    def at(self, params: float) -> float:
        return float(f"{self.value * (params / self.reference) ** (-self.exponent):.3g}")


@dataclass(frozen=True)
class Scaling:
    """Budgets that grow with the model (a scaling-law study) and the window its laws are fitted on."""

    tokens_per_parameter: float
    warmup_fraction: float = 0.02
    warmup_min_steps: int = 1
    """Each run's warm-up is max(this, warmup_fraction of its steps): the smallest runs still warm up."""
    evaluations: int = 8
    lr: LrRule | None = None
    objective_lr: dict[str, LrRule] = field(default_factory=dict)
    """Each objective's (variation's) own rule, from its own sweep, where it has one; ``lr`` for the others."""
    seeds: dict[str, list[int]] = field(default_factory=dict)
    """A model's own seeds, where they differ from the study's."""
    fit_from: str | None = None
    """The smallest model the laws are fitted from (the window rule; None: every size). Every contiguous window of
    ≥ 4 sizes and the local slopes are reported whatever it says."""

    def check(self, where: str) -> None:
        if not (self.tokens_per_parameter > 0 and 0 <= self.warmup_fraction < 0.5 and self.evaluations >= 2
                and self.warmup_min_steps >= 1):
            raise InvalidValue(f"{where}: needs tokens_per_parameter > 0, 0 ≤ warmup_fraction < 0.5, warmup_min_steps "
                               f"≥ 1 and evaluations ≥ 2; got {self.tokens_per_parameter}, {self.warmup_fraction}, "
                               f"{self.warmup_min_steps}, {self.evaluations}")
        unnamed = [v for v, rule in self.objective_lr.items() if not rule.sweep]
        if unnamed:
            raise InvalidValue(f"{where}.objective_lr.{unnamed[0]} names no sweep; give sweep: <the learning-rate sweep "
                               f"study whose report gives the rule>, e.g. sweep: scaling-cpu-lr-{unnamed[0]}")

    def rule(self, variation: str) -> LrRule | None:
        """The learning-rate rule a variation trains by: its own, else the study's."""
        return self.objective_lr.get(variation, self.lr)


@dataclass(frozen=True)
class Sweep:
    """A grid of variations around one variation (see the study module's docstring)."""

    variation: str
    grid: dict[str, list[Any]]
    metric: str = "ece_10"

    def check(self, where: str) -> None:
        if self.metric not in METRICS:
            raise InvalidValue(f"{where}.metric={self.metric!r}; choose one of {list(METRICS)}")


@dataclass(frozen=True)
class Baselines:
    """Which variations are the method and the two baselines it is compared with."""

    method: str = "hypros"
    log: str = "log"
    bounded: str = "brier"


@dataclass(frozen=True)
class Criteria:
    """How the criteria judge: the significance level (of Holm-adjusted p), the non-inferiority margins, and the
    families of comparisons Holm's correction runs within (default: one family per metric, across model sizes and
    baselines)."""

    pilot: bool = False
    """True: fewer than three seeds are allowed (a pilot of the pipeline); what needs three is marked untested or
    not measured in the report."""
    alpha: float = 0.05
    margins: dict[str, float] = field(default_factory=dict)
    """Metric → margin in its units, over [`DEFAULT_MARGINS`][hypros_lm.studies.sections.DEFAULT_MARGINS]."""
    families: dict[str, list[str]] = field(default_factory=dict)
    """Family name → the metrics whose comparisons it holds (e.g. ``calibration: [brier, ece_10]``)."""

    def margin(self, metric: str) -> float:
        return float(self.margins.get(metric, DEFAULT_MARGINS.get(metric, 0.0)))

    def family(self, metric: str) -> str:
        return next((name for name, metrics in self.families.items() if metric in metrics), metric)

    def check(self, where: str) -> None:
        if not 0 < self.alpha < 0.5:
            raise InvalidValue(f"{where}.alpha={self.alpha!r}: give a level between 0 and 0.5 (e.g. 0.05)")
        for metric, margin in self.margins.items():
            if metric not in METRICS:
                raise InvalidValue(f"{where}.margins.{metric}: not a compared metric; choose among {list(METRICS)}")
            if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
                    or margin < 0:
                raise InvalidValue(f"{where}.margins.{metric}={margin!r}: give a number ≥ 0 in the metric's units "
                                   f"(the default is {DEFAULT_MARGINS[metric]})")
        for name, metrics in self.families.items():
            if not isinstance(metrics, list) or not metrics or set(metrics) - set(METRICS):
                raise InvalidValue(f"{where}.families.{name}={metrics!r} names no test; list metrics among "
                                   f"{list(METRICS)}, e.g. families: {{calibration: [brier, ece_10]}}")


def section(cls: type[T], raw: Any, where: str) -> T:
    """``cls`` from a study file's mapping: each value converted to its field's type, nested sections built, an
    unknown key or a bad value named with ``where`` (e.g. ``studies/x.yaml: scaling``) in one line."""
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise InvalidValue(f"{where}={raw!r} must be a mapping of {_keys(cls)}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            raise InvalidValue(f"{where}: unknown key {key!r}; " + (f"did you mean {close[0]!r}? " if close else "")
                               + f"known: {_keys(cls)}")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in raw]
    if missing:
        raise InvalidValue(f"{where}: needs {missing[0]!r} (keys: {_keys(cls)})")
    hints = typing.get_type_hints(cls)
    values = {key: _value(hints[key], value, f"{where}.{key}") for key, value in raw.items()}
    built = cls(**values)
    if hasattr(built, "check"):
        built.check(where)
    return built


def _value(hint: Any, raw: Any, where: str) -> Any:
    if typing.get_origin(hint) is dict:
        if not isinstance(raw, dict):
            raise InvalidValue(f"{where}={raw!r} must be a mapping")
        value_type = typing.get_args(hint)[1]
        if dataclasses.is_dataclass(value_type):
            return {key: section(value_type, value, f"{where}.{key}") for key, value in raw.items()}
        return dict(raw)
    nested = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    if nested and raw is not None:
        return section(nested[0], raw, where)
    return coerce(where, raw, hint)


def _keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))
