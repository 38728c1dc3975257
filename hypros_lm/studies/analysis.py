"""A study's analysis: per-cell summaries, the paired comparisons of the method (studies/comparisons.py), the
criteria (studies/criteria.py), the schedule sweep and the scaling fits, as plain numbers for ``analysis.json``
(its schema: studies/schema.py). Pure computation over RunResults."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from hypros_lm.models.hf import model_label
from hypros_lm.studies.comparisons import compare, sweep
from hypros_lm.studies.context import Context, by_cell, targets, ttt
from hypros_lm.studies.criteria import CRITERIA
from hypros_lm.studies.results import EFFICIENCY, GENERATION_SCORES, RunResult
from hypros_lm.studies.scaling_study import analyse_scaling
from hypros_lm.studies.schema import SCHEMA_VERSION
from hypros_lm.studies.spec import Study
from hypros_lm.studies.stats import mean_std


def analyse(study: Study, runs: list[RunResult], timings: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything a report shows, as plain numbers (written to analysis.json beside report.md)."""
    cells = by_cell(runs)
    models = [m for m in map(model_label, study.models) if any(k[1] == m for k in cells)]  # hf:<path> -> its label
    variations = [v for v in study.variations if any(k[0] == v for k in cells)]
    ctx = Context(study, cells, models, targets(study, cells, models), [], timings or {})
    for m in models:
        for role, v in (("method", ctx.method), ("log-loss baseline", ctx.log), ("bounded baseline", ctx.bounded)):
            if (v, m) not in cells:
                ctx.notes.append(f"{m}: the {role} {v!r} has no finished runs, so comparisons with it are not made")
    summary = [summary_row(ctx, m, v) for m in models for v in variations if cells.get((v, m))]
    comparisons = compare(ctx)
    judgements = [judge(ctx, comparisons) for judge in CRITERIA]
    return {"schema": SCHEMA_VERSION, "summary": summary, "comparisons": [asdict(c) for c in comparisons],
            "criteria": [asdict(j) for j in judgements],
            "scaling": _scaling(study, runs, variations, ctx.notes), "sweep": sweep(ctx),
            "targets": ctx.targets, "target_rule": "study" if study.target.value is not None else "log-loss mean final",
            "margins": {k: study.criteria.margin(k) for k in dict.fromkeys(("nll", ctx.primary, "brier", "ece_10"))},
            "alpha": study.criteria.alpha, "pilot": study.criteria.pilot, "notes": ctx.notes, "models": models,
            "variations": variations,
            "seeds": sorted({r.seed for r in runs}),
            "seeds_per_cell": [{"variation": v, "model": m, "seeds": sorted(cells[(v, m)])}
                               for m in models for v in variations if cells.get((v, m))],
            "runs": len(runs)}


def summary_row(ctx: Context, model: str, variation: str) -> dict[str, Any]:
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
    row["ttt_reached"] = sum(t is not None for t in reached)
    row["ttt_steps"] = mean_std([t[0] for t in reached]) if all(reached) else None
    row["ttt_seconds"] = mean_std([t[1] for t in reached]) if all(reached) else None
    primary = ctx.primary if ctx.primary in GENERATION_SCORES else "accuracy"
    for name in ctx.study.robustness:
        vals = [r.evals[name] for r in seeds.values() if name in r.evals]
        if vals:
            for key, shown in (("loss_log", "nll"), ("ece_10", "ece_10"), ("accuracy", "accuracy"), (primary, primary)):
                if all(key in x for x in vals):
                    row[f"{name}:{shown}"] = mean_std([x[key] for x in vals])
        drops = [d for d in (_drop(r, name, primary) for r in seeds.values() if name in r.evals) if d is not None]
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


def _scaling(study: Study, runs: list[RunResult], variations: list[str], notes: list[str]) -> dict[str, Any]:
    """The scaling laws per variation and metric with intervals and what compares them
    ([`analyse_scaling()`][hypros_lm.studies.scaling_study.analyse_scaling]); each law not identified is noted with why
    (none where the study has one model size: one note then)."""
    if len({r.params for r in runs}) < 2:
        notes.append("scaling fits: not made (one model size)")
        return {}
    fit_from = study.scaling.fit_from if study.scaling else None
    result = analyse_scaling(runs, variations, log=study.baselines.log, fit_from=fit_from,
                             lr_sweep=study.sweep is not None)
    for law in result["laws"]:
        if not law["identified"]:
            notes.append(f"scaling law {law['variation']} {law['metric']} vs parameters: not identified ({law['reason']})")
    return result
