"""A study's analysis: per-cell summaries, paired comparisons of the method, the five criteria (each a small
function in CRITERIA), the schedule sweep and the scaling fits. Pure computation over RunResults.

Criteria (the study's own), each reported with its measured value and a verdict:
  C1 step-time overhead of the method vs log-loss ≤ 3 %.
  C2 final task metric (test NLL for pretraining) ≥ 0.3σ better than log-loss, or matched (within 0.3σ)
     with ≥ 25 % fewer steps to the target validation loss.
  C3 ≥ 10 % lower test ECE or token Brier than log-loss, with a task metric not significantly worse.
  C4 no significant degradation (paired t-test, p < 0.05) vs the bounded-score baseline on the robustness sets.
  C5 positive or neutral (within 1 %) in ≥ 80 % of all paired comparisons, binomial p < 0.05.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from hypros_lm.models.hf import model_label
from hypros_lm.studies.results import COMPARED, EFFICIENCY, GENERATION_SCORES, RunResult, task_metric
from hypros_lm.studies.scaling import analyse_scaling
from hypros_lm.studies.spec import Study
from hypros_lm.studies.stats import (
    NotEnoughData,
    bootstrap_ci,
    mean_std,
    paired_t_test,
    sign_test,
    time_to_target,
)

Cells = dict[tuple[str, str], dict[int, RunResult]]


@dataclass
class Context:
    """What every criterion reads: the study, its runs by (variation, model) and seed, the model sizes
    present, the time-to-target levels, and the notes on comparisons not made (appended to)."""

    study: Study
    cells: Cells
    models: list[str]
    targets: dict[str, float]
    notes: list[str]
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Interleaved step timings by model (results.read_timings), where the study made them."""

    @property
    def method(self) -> str:
        return self.study.baselines["method"]

    @property
    def log(self) -> str:
        return self.study.baselines["log"]

    @property
    def bounded(self) -> str:
        return self.study.baselines["bounded"]

    @property
    def primary(self) -> str | None:
        """The generation score the study is judged on first (results.task_metric), None for test NLL."""
        return task_metric(self.study)

    def task_pairs(self, a: str, b: str, model: str) -> tuple[list[float], list[float], int, str]:
        """Paired test values of the task metric for variations a and b, the sign that makes "higher" better
        (+1 for BLEU/ROUGE-L, −1 for NLL) and the metric's name."""
        key = self.primary or "nll"
        x, y = self.paired(a, b, model, lambda r: r.test[key])
        return x, y, (1 if self.primary else -1), GENERATION_SCORES.get(key, "NLL")

    @property
    def metric(self) -> str:
        return self.study.target.get("metric", "loss_log")

    def paired(self, a: str, b: str, model: str, value) -> tuple[list[float], list[float]]:
        seeds = sorted(set(self.cells.get((a, model), {})) & set(self.cells.get((b, model), {})))
        return ([value(self.cells[(a, model)][s]) for s in seeds], [value(self.cells[(b, model)][s]) for s in seeds])


def by_cell(runs: list[RunResult]) -> dict[tuple[str, str], dict[int, RunResult]]:
    table: dict[tuple[str, str], dict[int, RunResult]] = defaultdict(dict)
    for r in runs:
        table[(r.variation, r.model)][r.seed] = r
    return table


def _targets(study: Study, cells, models: list[str]) -> dict[str, float]:
    """Time-to-target level per model: the study's value, or the worst final value of any run of that
    size, so that every run reaches it and the steps taken are comparable."""
    metric, value = study.target.get("metric", "loss_log"), study.target.get("value")
    out = {}
    for m in models:
        finals = [r.curve[-1][metric] for (v, mm), seeds in cells.items() if mm == m for r in seeds.values()]
        out[m] = float(value) if value is not None else float(max(finals))
    return out


def ttt(run: RunResult, metric: str, target: float) -> tuple[float, float] | None:
    return time_to_target([r["step"] for r in run.curve], [r["elapsed_s"] for r in run.curve],
                          [r[metric] for r in run.curve], target)



def analyse(study: Study, runs: list[RunResult], timings: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything a report shows, as plain data (written to analysis.json beside report.md)."""
    cells = by_cell(runs)
    models = [m for m in map(model_label, study.models) if any(k[1] == m for k in cells)]  # hf:<path> -> its label
    variations = [v for v in study.variations if any(k[0] == v for k in cells)]
    ctx = Context(study, cells, models, _targets(study, cells, models), [], timings or {})
    for m in models:
        for role, v in (("method", ctx.method), ("log-loss baseline", ctx.log), ("bounded baseline", ctx.bounded)):
            if (v, m) not in cells:
                ctx.notes.append(f"{m}: the {role} {v!r} has no finished runs, so comparisons with it are not made")
    summary = [_summary_row(ctx, m, v) for m in models for v in variations if cells.get((v, m))]
    comparisons = _comparisons(ctx)
    criteria = [c for judge in CRITERIA for c in judge(ctx)]
    return {"summary": summary, "comparisons": comparisons, "criteria": criteria,
            "scaling": _scaling(runs, variations, ctx.notes), "sweep": _sweep(ctx),
            "targets": ctx.targets, "notes": ctx.notes, "models": models, "variations": variations,
            "seeds": sorted({r.seed for r in runs}), "runs": len(runs)}


def _summary_row(ctx: Context, model: str, variation: str) -> dict[str, Any]:
    """Mean ± std over seeds of one (model, variation) cell: scores, step time, telemetry, time-to-target,
    robustness sets."""
    seeds = ctx.cells[(variation, model)]
    row = {"model": model, "variation": variation, "seeds": len(seeds), "params": next(iter(seeds.values())).params}
    for key in ("nll", "brier", "ece_10", "accuracy", "auc", *GENERATION_SCORES):
        if all(key in r.test for r in seeds.values()):
            row[key] = mean_std([r.test[key] for r in seeds.values()])
    row["step_time"] = mean_std([r.step_time for r in seeds.values()])
    for key, _ in EFFICIENCY:
        logged = [v for v in (r.telemetry(key) for r in seeds.values()) if v is not None]
        row[f"eff:{key}"] = mean_std(logged) if logged else None
    reached = [ttt(r, ctx.metric, ctx.targets[model]) for r in seeds.values()]
    row["ttt_steps"] = mean_std([t[0] for t in reached]) if all(reached) else None
    row["ttt_seconds"] = mean_std([t[1] for t in reached]) if all(reached) else None
    for name in ctx.study.robustness:
        vals = [r.evals[name] for r in seeds.values() if name in r.evals]
        if vals:
            row[f"{name}:nll"] = mean_std([x["loss_log"] for x in vals])
            row[f"{name}:ece_10"] = mean_std([x["ece_10"] for x in vals])
            row[f"{name}:accuracy"] = mean_std([x["accuracy"] for x in vals])
            if ctx.primary and all(ctx.primary in x for x in vals):
                row[f"{name}:{ctx.primary}"] = mean_std([x[ctx.primary] for x in vals])
        drops = [_drop(r, name, ctx.primary or "accuracy") for r in seeds.values() if name in r.evals]
        drops = [d for d in drops if d is not None]
        if drops:
            row[f"{name}:drop"] = mean_std(drops)
    return row


def _drop(run: RunResult, name: str, key: str) -> float | None:
    """Relative degradation of the task score on a robustness set: the perturbed evaluation's own (against its
    clean sources), else (test − set) / test."""
    ev = run.evals[name]
    if isinstance(ev.get("relative_degradation"), float):
        return ev["relative_degradation"]
    return (run.test[key] - ev[key]) / run.test[key] if run.test.get(key) and key in ev else None


def _comparisons(ctx: Context) -> list[dict[str, Any]]:
    """The method against each baseline (once each, also when they are one variation) on every compared score."""
    out = []
    for m in ctx.models:
        for other in dict.fromkeys((ctx.log, ctx.bounded)):
            if other == ctx.method:
                continue
            scores = [(ctx.primary, f"test {GENERATION_SCORES[ctx.primary]}")] if ctx.primary else []
            for key, label in (*scores, *COMPARED):
                a, b = ctx.paired(ctx.method, other, m, lambda r, k=key: r.test[k])
                comp = {"model": m, "vs": other, "metric": label, "n": len(a)}
                try:
                    comp["diff"] = float(np.mean(np.subtract(a, b)))
                    comp["t"], comp["p"] = paired_t_test(a, b)
                    comp["ci"] = bootstrap_ci(a, b)
                except NotEnoughData as err:
                    ctx.notes.append(f"{ctx.method} vs {other}, {m}, {label}: not compared ({err})")
                    continue
                out.append(comp)
    return out


def _verdict(cid: str, text: str, details: list[str], passed: bool) -> list[dict[str, Any]]:
    """A criterion's row (none when nothing could be judged): what it asks, what was measured, the verdict."""
    return [{"id": cid, "text": text, "value": "; ".join(details), "pass": passed}] if details else []


C1_THRESHOLD = 1.03  # method/log step time


def c1_step_time(ctx: Context) -> list[dict[str, Any]]:
    """Judged on the study's interleaved timing where it made one (``timing:``: the method's and log-loss's
    steps alternated in one process, so the machine's drift hits both alike), else on the paired runs' median
    step times; either only when the spread allows a verdict: the 95 % t-interval of the mean method/log ratio
    lies wholly on one side of 1.03. Otherwise (runs sharing the cores, one pair) the cell says "not measured"
    and why."""
    timed = {m: ctx.timings[m] for m in ctx.models if m in ctx.timings}
    if timed:
        return [_c1_from_timing(timed)]
    ratios = []
    for m in ctx.models:
        a, b = ctx.paired(ctx.method, ctx.log, m, lambda r: r.step_time)
        ratios += [x / y for x, y in zip(a, b, strict=True)]
    if not ratios:
        ctx.notes.append("C1: no paired method/log-loss runs")
        return []
    text = "step-time overhead vs log-loss ≤ 3 % (judged on paired runs' median step times)"
    mean = float(np.mean(ratios))
    measured = f"{more_or_less((mean - 1) * 100, '.1f', '% slower', '% faster')} per step than log-loss"
    if len(ratios) < 2:
        return [{"id": "C1", "text": text, "pass": None,
                 "value": f"not measured: one pair ({measured}) gives no spread; use benchmarks/step_time.py"}]
    low, high, verdict = _ratio_interval(ratios)
    interval = f"95 % interval of the ratio [{low:.3f}, {high:.3f}] over {len(ratios)} pairs"
    if verdict is None:
        return [{"id": "C1", "text": text, "pass": None,
                 "value": f"not measured: {measured}, but the {interval} spans the 1.03 threshold (runs that "
                          f"shared the cores); use benchmarks/step_time.py, which alternates the two in one process"}]
    return [{"id": "C1", "text": text, "value": f"{measured} ({interval})", "pass": verdict}]


def _ratio_interval(ratios) -> tuple[float, float, bool | None]:
    """The 95 % t-interval of the mean method/log step-time ratio and its verdict: PASS wholly at or below 1.03,
    FAIL wholly above, None (no verdict) where it spans the threshold."""
    mean = float(np.mean(ratios))
    half = float(stats.t.ppf(0.975, len(ratios) - 1) * np.std(ratios, ddof=1) / np.sqrt(len(ratios)))
    low, high = mean - half, mean + half
    return low, high, True if high <= C1_THRESHOLD else False if low > C1_THRESHOLD else None


def _c1_from_timing(timed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """C1 on the interleaved timing: per model, the ratio of each method step to the log-loss step beside it,
    and the 95 % t-interval of their mean; a verdict only where every model's interval lies on one side of 1.03."""
    text = "step-time overhead vs log-loss ≤ 3 % (judged on an interleaved timing: the two alternated in one process)"
    details, verdicts = [], []
    for m, t in timed.items():
        ratios = np.divide(t["method_times"], t["log_times"])
        low, high, verdict = _ratio_interval(ratios)
        verdicts.append(verdict)
        details.append(f"{m}: {more_or_less((t['ratio'] - 1) * 100, '.1f', '% slower', '% faster')} (medians "
                       f"{t['method_s']:.4f} vs {t['log_s']:.4f} s/step; 95 % interval of the step ratio "
                       f"[{low:.3f}, {high:.3f}] over {len(ratios)} alternated pairs)")
    passed = False if False in verdicts else (None if None in verdicts else True)
    value = "; ".join(details)
    if passed is None:
        value = f"not measured: an interval spans the 1.03 threshold (more timing steps would settle it); {value}"
    return {"id": "C1", "text": text, "value": value, "pass": passed}


def c2_task_metric(ctx: Context) -> list[dict[str, Any]]:
    verdicts, details = [], []
    for m in ctx.models:
        a, b, sign, label = ctx.task_pairs(ctx.method, ctx.log, m)
        if len(a) < 2:
            ctx.notes.append(f"C2/C3 for {m}: fewer than 2 paired seeds")
            continue
        sigma = float(np.std(b, ddof=1))
        gain = sign * float(np.mean(a) - np.mean(b))  # > 0: the method is better
        ta = [ttt(r, ctx.metric, ctx.targets[m]) for r in ctx.cells[(ctx.method, m)].values()]
        tb = [ttt(r, ctx.metric, ctx.targets[m]) for r in ctx.cells[(ctx.log, m)].values()]
        faster = all(ta) and all(tb) and np.mean([t[0] for t in ta]) <= 0.75 * np.mean([t[0] for t in tb])
        verdicts.append(gain >= 0.3 * sigma or (abs(gain) < 0.3 * sigma and faster))
        steps = [f"{np.mean([t[0] for t in x]):.0f}" if all(x) else "never" for x in (ta, tb)]
        details.append(f"{m}: {label} {more_or_less(sign * gain, '.4g')} than log-loss (σ_log {sigma:.4g}), steps to "
                       f"target {steps[0]} vs {steps[1]}")
    metric = f"test {GENERATION_SCORES[ctx.primary]}" if ctx.primary else "task metric"
    return _verdict("C2", f"{metric} ≥ 0.3σ better than log-loss, or matched with ≥ 25 % faster time-to-target",
                    details, all(verdicts))


def c3_calibration(ctx: Context) -> list[dict[str, Any]]:
    verdicts, details = [], []
    for m in ctx.models:
        a, b, sign, label = ctx.task_pairs(ctx.method, ctx.log, m)
        if len(a) < 2:
            continue  # C2 noted it
        t_stat, p = paired_t_test(a, b)
        task_ok = not (p < 0.05 and sign * t_stat < 0)
        gains = {}
        for key in ("ece_10", "brier"):
            x, y = ctx.paired(ctx.method, ctx.log, m, lambda r, k=key: r.test[k])
            gains[key] = (np.mean(y) - np.mean(x)) / np.mean(y)
        verdicts.append(task_ok and max(gains.values()) >= 0.10)
        details.append(f"{m}: {more_or_less(gains['ece_10'] * 100, '.1f', '% lower', '% higher')} ECE, "
                       f"{more_or_less(gains['brier'] * 100, '.1f', '% lower', '% higher')} Brier than log-loss; "
                       f"{label} {'not ' if task_ok else ''}significantly worse (p={p:.3f})")
    return _verdict("C3", "≥ 10 % lower ECE or token Brier than log-loss, task metric no worse", details, all(verdicts))


def c4_robustness(ctx: Context) -> list[dict[str, Any]]:
    degraded, details = [], []
    for name in ctx.study.robustness:
        for m in ctx.models:
            scores = [(ctx.primary, GENERATION_SCORES[ctx.primary], 1)] if ctx.primary else []
            for key, shown, sign in (*scores, ("loss_log", "NLL", -1), ("ece_10", "ECE", -1)):
                a, b = ctx.paired(ctx.method, ctx.bounded, m,
                                  lambda r, k=key, n=name: r.evals[n].get(k, np.nan) if n in r.evals else np.nan)
                if len(a) < 2 or np.isnan(a + b).any():
                    ctx.notes.append(f"C4 {name} {m} {key}: not enough paired evaluations")
                    continue
                t_stat, p = paired_t_test(a, b)
                degraded.append(p < 0.05 and sign * t_stat < 0)
                details.append(f"{name} {m} {shown}: {more_or_less(float(np.mean(a) - np.mean(b)), '.4f')} than "
                               f"{ctx.bounded} (p={p:.3f})")
    return _verdict("C4", f"no significant degradation vs {ctx.bounded} on robustness sets", details, not any(degraded))


def c5_paired_wins(ctx: Context) -> list[dict[str, Any]]:
    outcomes: list[bool] = []
    for m in ctx.models:
        for other in {ctx.log, ctx.bounded} - {ctx.method}:
            for key in ("nll", "brier", "ece_10"):
                a, b = ctx.paired(ctx.method, other, m, lambda r, k=key: r.test[k])
                outcomes += [x <= y * 1.01 for x, y in zip(a, b, strict=True)]
            if ctx.primary:  # higher is better
                a, b = ctx.paired(ctx.method, other, m, lambda r: r.test[ctx.primary])
                outcomes += [x >= y * 0.99 for x, y in zip(a, b, strict=True)]
            for name in ctx.study.robustness:
                a, b = ctx.paired(ctx.method, other, m, lambda r, n=name: r.evals.get(n, {}).get("loss_log", np.nan))
                outcomes += [x <= y * 1.01 for x, y in zip(a, b, strict=True) if not (np.isnan(x) or np.isnan(y))]
    if not outcomes:
        return []
    wins, total = sum(outcomes), len(outcomes)
    p = sign_test(wins, total)
    return [{"id": "C5", "text": "positive or neutral in ≥ 80 % of paired comparisons, binomial p < 0.05",
             "value": f"{wins}/{total} = {wins / total * 100:.0f} %, p = {p:.2g}", "pass": wins / total >= 0.8 and p < 0.05}]


CRITERIA: tuple[Callable[[Context], list[dict[str, Any]]], ...] = (
    c1_step_time, c2_task_metric, c3_calibration, c4_robustness, c5_paired_wins,
)


def _sweep(ctx: Context) -> list[dict[str, Any]]:
    """Per model and grid cell: the sweep metric over seeds, and its paired difference from the reference
    (the default schedule) with the paired t-test's p (seeds matched); empty without a sweep."""
    study = ctx.study
    if not study.grid_cells:
        return []
    reference, metric = study.sweep["variation"], study.sweep["metric"]
    rows = []
    for m in ctx.models:
        for variation, values in study.grid_cells.items():
            seeds = ctx.cells.get((variation, m), {})
            if not seeds:
                ctx.notes.append(f"sweep {m} {variation}: no finished runs")
                continue
            row = {"model": m, "variation": variation, "values": values, "reference": variation == reference,
                   "metric": metric, "value": mean_std([r.test[metric] for r in seeds.values()]),
                   "diff": None, "p": None, "significant": False}
            if variation != reference:
                a, b = ctx.paired(variation, reference, m, lambda r: r.test[metric])
                try:
                    row["t"], row["p"] = paired_t_test(a, b)
                    row["diff"] = float(np.mean(np.subtract(a, b)))
                    row["significant"] = row["p"] < 0.05
                except NotEnoughData as err:
                    ctx.notes.append(f"sweep {m} {variation} vs {reference}: not tested ({err})")
            rows.append(row)
    return rows


def more_or_less(amount: float, fmt: str, up: str = "higher", down: str = "lower") -> str:
    """'0.1412 higher' / '19.1 lower': a measured change with its direction in words, never a bare sign."""
    if amount == 0:
        return f"{0:{fmt}} (no change)"
    return f"{abs(amount):{fmt}} {up if amount > 0 else down}"


def _scaling(runs: list[RunResult], variations: list[str], notes: list[str]) -> dict[str, Any]:
    """The scaling laws per variation and metric with intervals and what compares them
    ([`analyse_scaling()`][hypros_lm.studies.scaling.analyse_scaling]); each law not identified is noted with why
    (none where the study has one model size: one note then)."""
    if len({r.params for r in runs}) < 2:
        notes.append("scaling fits: not made (one model size)")
        return {}
    result = analyse_scaling(runs, variations)
    for key, law in result["laws"].items():
        if not law["identified"]:
            notes.append(f"scaling law {key.replace(':', ' ')} vs parameters: not identified ({law['reason']})")
    return result
