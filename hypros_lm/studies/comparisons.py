"""The method's paired comparisons with each baseline and the sweep's cells with their reference: the mean
difference over the seeds both ran, its t interval, the paired t-test, and Holm's adjusted p within each family
(the study file's ``criteria.families``, else one family per metric across model sizes and baselines). Fewer than
three paired seeds give a row marked untested, never a p-value."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from hypros_lm.studies.context import Context
from hypros_lm.studies.results import COMPARED, GENERATION_SCORES
from hypros_lm.studies.schema import Comparison
from hypros_lm.studies.stats import MIN_PAIRS, NotEnoughData, holm, mean_std, paired_difference

LABELS = {**dict(COMPARED), **{k: f"test {v}" for k, v in GENERATION_SCORES.items()}, "accuracy": "test accuracy"}


def label(metric: str) -> str:
    return LABELS.get(metric, f"test {metric}")


def adjust(rows: Sequence[Any], family: Callable[[Any], str] = lambda r: r.family) -> None:
    """Set each row's ``p_adjusted`` to Holm's within its family (rows without a p are left alone)."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if row.p is not None:
            groups[family(row)].append(row)
    for members in groups.values():
        for row, q in zip(members, holm([r.p for r in members]), strict=True):
            row.p_adjusted = q


def paired(a: Sequence[float], b: Sequence[float], **fields: Any) -> Comparison:
    """One comparison of paired values a − b: tested with a t interval at n ≥ 3, else marked untested."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    row = Comparison(n=len(d), diff=mean_std(d)[0], **fields)
    try:
        res = paired_difference(a, b)
    except NotEnoughData:
        row.tested, row.reason = False, f"n = {len(d)}: no test (a comparison needs ≥ {MIN_PAIRS} paired seeds)"
        return row
    row.low, row.high, row.t, row.p = res.low, res.high, res.t, res.p
    return row


def compare(ctx: Context) -> list[Comparison]:
    """The method against each baseline (once each, also when they are one variation) on the task metric and every
    compared score, at every model size; Holm-adjusted within families."""
    rows = []
    metrics = list(dict.fromkeys((ctx.primary, *(k for k, _ in COMPARED))))
    for m in ctx.models:
        for other in dict.fromkeys((ctx.log, ctx.bounded)):
            if other == ctx.method:
                continue
            for key in metrics:
                a, b = ctx.test_pairs(ctx.method, other, m, key)
                if not a:
                    continue
                rows.append(paired(a, b, model=m, vs=other, metric=key, label=label(key),
                                   family=ctx.study.criteria.family(key)))
                if not rows[-1].tested:
                    ctx.notes.append(f"{ctx.method} vs {other}, {m}, {label(key)}: {rows[-1].reason}")
    adjust(rows)
    return rows


def sweep(ctx: Context) -> list[dict[str, Any]]:
    """Per model and grid cell: the sweep metric over seeds, and its paired difference from the reference (the
    default schedule) with its t interval and p, Holm-adjusted over the model's cells; empty without a sweep."""
    study = ctx.study
    if not study.grid_cells:
        return []
    reference, metric = study.sweep.variation, study.sweep.metric
    out: list[dict[str, Any]] = []
    for m in ctx.models:
        rows = []
        for variation, values in study.grid_cells.items():
            seeds = ctx.cells.get((variation, m), {})
            if not seeds:
                ctx.notes.append(f"sweep {m} {variation}: no finished runs")
                continue
            diff = None  # the reference is not compared with itself
            if variation != reference:
                diff = paired(*ctx.test_pairs(variation, reference, m, metric), model=m, vs=reference, metric=metric,
                              label=label(metric), family=f"sweep {m}")
            rows.append(({"model": m, "variation": variation, "values": values, "reference": diff is None,
                          "metric": metric, "value": mean_std([r.test[metric] for r in seeds.values()]),
                          "n": len(seeds) if diff is None else diff.n}, diff))
        adjust([d for _, d in rows if d is not None])
        for row, d in rows:
            tested = d is not None and d.tested
            if d is not None and not d.tested:
                ctx.notes.append(f"sweep {m} {row['variation']} vs {reference}: {d.reason}")
            out.append({**row, "diff": None if d is None else d.diff,
                        "low": d.low if tested else None, "high": d.high if tested else None,
                        "t": d.t if tested else None, "p": d.p if tested else None,
                        "p_adjusted": d.p_adjusted if tested else None,
                        "significant": bool(tested and d.p_adjusted < study.criteria.alpha)})
    return out
