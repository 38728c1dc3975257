"""What a study's analysis reads: its runs by (variation, model) and seed, the time-to-target levels, and the
[`Context`][hypros_lm.studies.context.Context] every comparison and criterion is given."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hypros_lm.studies.results import GENERATION_SCORES, RunResult, task_metric
from hypros_lm.studies.spec import Study
from hypros_lm.studies.stats import time_to_target

Cells = dict[tuple[str, str], dict[int, RunResult]]


@dataclass
class Context:
    """What every criterion reads: the study, its runs by (variation, model) and seed, the model sizes present, the
    time-to-target levels, and the notes on comparisons not made (appended to)."""

    study: Study
    cells: Cells
    models: list[str]
    targets: dict[str, float]
    notes: list[str]
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Interleaved step timings by model (results.read_timings), where the study made them."""

    @property
    def method(self) -> str:
        return self.study.baselines.method

    @property
    def log(self) -> str:
        return self.study.baselines.log

    @property
    def bounded(self) -> str:
        return self.study.baselines.bounded

    @property
    def primary(self) -> str:
        """The task metric's key: the generation score a sequence-to-sequence study is judged on first
        (results.task_metric), else ``nll``."""
        return task_metric(self.study) or "nll"

    @property
    def higher_is_better(self) -> bool:
        return self.primary in GENERATION_SCORES

    @property
    def primary_label(self) -> str:
        return GENERATION_SCORES.get(self.primary, "NLL")

    @property
    def metric(self) -> str:
        """The validation field time-to-target reads."""
        return self.study.target.metric

    def paired(self, a: str, b: str, model: str, value: Callable[[RunResult], float]) -> tuple[list[float], list[float]]:
        """Values of variations a and b over the seeds both ran at ``model``, in seed order."""
        seeds = sorted(set(self.cells.get((a, model), {})) & set(self.cells.get((b, model), {})))
        return ([value(self.cells[(a, model)][s]) for s in seeds], [value(self.cells[(b, model)][s]) for s in seeds])

    def test_pairs(self, a: str, b: str, model: str, key: str) -> tuple[list[float], list[float]]:
        return self.paired(a, b, model, lambda r: r.test[key])


def by_cell(runs: list[RunResult]) -> Cells:
    table: Cells = defaultdict(dict)
    for r in runs:
        table[(r.variation, r.model)][r.seed] = r
    return table


def targets(study: Study, cells: Cells, models: list[str]) -> dict[str, float]:
    """Time-to-target level per model: the study's value, else the log-loss baseline's mean final value there (a
    level only its better runs reach), else (no baseline runs at that size) the worst final value of any run."""
    metric, value = study.target.metric, study.target.value
    out = {}
    for m in models:
        if value is not None:
            out[m] = float(value)
            continue
        log_runs = cells.get((study.baselines.log, m), {}).values()
        if log_runs:
            out[m] = float(np.mean([r.curve[-1][metric] for r in log_runs]))
        else:
            out[m] = float(max(r.curve[-1][metric] for (_, mm), seeds in cells.items() if mm == m
                               for r in seeds.values()))
    return out


def ttt(run: RunResult, metric: str, target: float) -> tuple[float, float] | None:
    """(step, seconds) at which a run's validation curve first reaches ``target``; None if it never does."""
    return time_to_target([r["step"] for r in run.curve], [r["elapsed_s"] for r in run.curve],
                          [r[metric] for r in run.curve], target)
