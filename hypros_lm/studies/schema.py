"""What ``analysis.json`` holds, as dataclasses: numbers in fields, never sentences (the report renders the prose).

Version 2 (this one): paired comparisons with t intervals, their n, raw and Holm-adjusted p and the family the
adjustment ran within; each criterion as a verdict over measurements (value, interval, n, p, adjusted p, margin);
scaling laws as records naming their objective and metric. Version 1 (before 2026-12) held percentile-bootstrap
intervals and criteria as prose; its files are not read back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 2

Verdict = Literal["pass", "fail", "not measured"]


@dataclass
class Comparison:
    """The method against a baseline on one metric at one model size, over the seeds both ran."""

    model: str
    vs: str
    metric: str
    """The metric's key (``nll``, ``bleu``, …)."""
    label: str
    """Its name in tables (``test NLL``)."""
    n: int
    diff: float
    """Mean of method − baseline over the paired seeds, in the metric's units."""
    low: float | None = None
    high: float | None = None
    """The 95 % t interval of ``diff`` (None where n < 3: no test)."""
    t: float | None = None
    p: float | None = None
    p_adjusted: float | None = None
    """Holm's adjusted p within ``family``."""
    family: str = ""
    tested: bool = True
    reason: str = ""
    """Why it was not tested (n < 3)."""


@dataclass
class Measurement:
    """One unit a criterion judges (a model size, a robustness set × metric, a seed): what was measured and how
    sure it is."""

    model: str
    quantity: str
    """What ``value`` is, e.g. ``BLEU gain over log-loss``, ``ECE reduction``, ``step-time ratio``."""
    value: float
    low: float | None = None
    high: float | None = None
    n: int | None = None
    p: float | None = None
    p_adjusted: float | None = None
    margin: float | None = None
    threshold: float | None = None
    verdict: Verdict | str = "not measured"
    extra: dict[str, Any] = field(default_factory=dict)
    """Further numbers the report shows (steps to target, the target, a baseline's σ, …)."""


@dataclass
class Judgement:
    """A criterion's verdict over its measurements."""

    id: str
    text: str
    verdict: Verdict
    measurements: list[Measurement] = field(default_factory=list)
    family: str = ""
    """The Holm family its p-values were adjusted within (empty: no p-values)."""
    reason: str = ""
    """Why the verdict is what it is, where the measurements alone do not say (``not measured``: why not)."""
