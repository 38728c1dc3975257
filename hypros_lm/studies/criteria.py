"""The study's five criteria, each a small function in CRITERIA from the analysis' context and its Holm-adjusted
comparisons to a [`Judgement`][hypros_lm.studies.schema.Judgement] (numbers; the report writes the sentences):

  C1 step-time overhead of the method vs log-loss ≤ 3 %: the 95 % t interval of the step-time ratio wholly below
     1.03 (an interleaved timing where the study made one).
  C2 task metric ≥ 0.3σ_log better than log-loss (and significant, Holm-adjusted), or matched (no worse by the
     margin, the one-sided bound) with ≥ 25 % fewer steps to a target that discriminates: by default the log-loss
     baseline's mean final validation loss; a target every run meets at its first evaluation is uninformative.
  C3 ≥ 10 % lower test ECE or Brier than log-loss (significant, Holm-adjusted), with the task metric no worse by
     the margin (non-inferiority: its one-sided 95 % bound above −margin).
  C4 no significant degradation (Holm-adjusted over every set × metric) vs the bounded baseline on the robustness
     sets.
  C5 no worse than log-loss by the margin in ≥ 80 % of independent units (model × seed, on the task metric),
     binomial p < α.

A verdict is ``pass``, ``fail`` (the claim is not shown, or its opposite is) or ``not measured`` (too few seeds or
units to judge; the reason says which).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from hypros_lm.studies.comparisons import adjust, label, paired
from hypros_lm.studies.context import Context, ttt
from hypros_lm.studies.results import GENERATION_SCORES
from hypros_lm.studies.schema import Comparison, Judgement, Measurement
from hypros_lm.studies.stats import NonInferiority, NotEnoughData, non_inferiority, sign_test, t_half_width

C1_THRESHOLD = 1.03  # method/log step time
C2_SIGMA = 0.3
C2_FASTER = 0.75
C3_REDUCTION = 0.10
C5_SHARE = 0.8


def overall(verdicts: Iterable[str]) -> str:
    """``fail`` where any judged unit fails, ``pass`` where all judged pass, ``not measured`` where none was judged."""
    judged = [v for v in verdicts if v in ("pass", "fail")]
    return "not measured" if not judged else "fail" if "fail" in judged else "pass"


def _no_worse(ctx: Context, model: str) -> NonInferiority:
    """The method against log-loss on the task metric by the study's margin (C2's "matched", C3's "no worse")."""
    a, b = ctx.test_pairs(ctx.method, ctx.log, model, ctx.primary)
    return non_inferiority(a, b, margin=ctx.study.criteria.margin(ctx.primary), higher_is_better=ctx.higher_is_better)


def c1_step_time(ctx: Context, comparisons: list[Comparison]) -> Judgement:
    """Judged on the study's interleaved timing where it made one (the method's and log-loss's steps alternated in
    one process, so the machine's drift hits both alike), else on the paired runs' median step times; a verdict only
    where the 95 % t interval of the mean method/log ratio lies wholly on one side of 1.03."""
    timed = {m: ctx.timings[m] for m in ctx.models if m in ctx.timings}
    measurements = []
    for m in ctx.models:
        if m in timed:
            t = timed[m]
            ratios = list(np.divide(t["method_times"], t["log_times"]))
            extra = {"source": "interleaved timing", "method_s": t["method_s"], "log_s": t["log_s"]}
        else:
            a, b = ctx.paired(ctx.method, ctx.log, m, lambda r: r.step_time)
            ratios, extra = [x / y for x, y in zip(a, b, strict=True)], {"source": "paired runs' median step times"}
        if ratios:
            measurements.append(_ratio(m, ratios, extra))
    source = "an interleaved timing" if timed else "paired runs' median step times"
    verdict = overall(m.verdict for m in measurements)
    reason = "" if verdict != "not measured" else (
        "an interval spans 1.03 or a model has fewer than 2 timed pairs (more timing steps would settle it; "
        "benchmarks/step_time.py alternates the two in one process)" if measurements else "no paired runs")
    return Judgement("C1", f"step-time overhead vs log-loss ≤ 3 % (judged on {source})", verdict, measurements,
                     reason=reason)


def _ratio(model: str, ratios: list[float], extra: dict) -> Measurement:
    mean = float(np.mean(ratios))
    row = Measurement(model, "step-time ratio (method / log-loss)", mean, n=len(ratios), threshold=C1_THRESHOLD,
                      extra=extra)
    if len(ratios) >= 2:
        half = t_half_width(ratios)
        row.low, row.high = mean - half, mean + half
        row.verdict = "pass" if row.high <= C1_THRESHOLD else "fail" if row.low > C1_THRESHOLD else "not measured"
    return row


def _of(comparisons: list[Comparison], model: str, vs: str, metric: str) -> Comparison | None:
    return next((c for c in comparisons if (c.model, c.vs, c.metric) == (model, vs, metric)), None)


def c2_task_metric(ctx: Context, comparisons: list[Comparison]) -> Judgement:
    measurements = []
    for m in ctx.models:
        c = _of(comparisons, m, ctx.log, ctx.primary)
        if c is None:
            continue
        b = ctx.test_pairs(ctx.method, ctx.log, m, ctx.primary)[1]
        sign = 1 if ctx.higher_is_better else -1
        sigma = float(np.std(b, ddof=1)) if len(b) > 1 else 0.0
        row = Measurement(m, f"{ctx.primary_label} gain over log-loss", sign * c.diff, n=c.n, p=c.p,
                          p_adjusted=c.p_adjusted, margin=ctx.study.criteria.margin(ctx.primary),
                          threshold=C2_SIGMA * sigma, extra={"sigma_log": sigma, **_time_to_target(ctx, m)})
        if c.tested:
            row.low, row.high = sorted((sign * c.low, sign * c.high))
            ni = _no_worse(ctx, m)
            better = row.value >= row.threshold and c.p_adjusted < ctx.study.criteria.alpha
            row.extra.update(matched=ni.verdict, matched_bound=ni.bound, matched_p=ni.p)
            row.verdict = "pass" if better or (ni.verdict == "no worse" and row.extra["faster"]) else "fail"
        measurements.append(row)
    return Judgement("C2", f"test {ctx.primary_label} ≥ 0.3σ better than log-loss, or matched (no worse by the margin)"
                     " with ≥ 25 % fewer steps to the target", overall(m.verdict for m in measurements), measurements,
                     family=ctx.study.criteria.family(ctx.primary),
                     reason="" if measurements else "no paired method and log-loss runs")


def _time_to_target(ctx: Context, model: str) -> dict:
    """Steps to the target of the method's and log-loss's runs: a run that never reaches it counts its last step (a
    lower bound, so the comparison can only favour log-loss); uninformative where every run of both reaches it at
    its first evaluation."""
    out: dict = {"target": ctx.targets[model]}
    first_hits = []
    for role, v in (("method", ctx.method), ("log", ctx.log)):
        runs = list(ctx.cells.get((v, model), {}).values())
        reached = [ttt(r, ctx.metric, ctx.targets[model]) for r in runs]
        steps = [t[0] if t else float(r.max_steps) for r, t in zip(runs, reached, strict=True)]
        first_hits += [t is not None and t[0] <= r.curve[0]["step"] for r, t in zip(runs, reached, strict=True)]
        out[f"steps_{role}"] = float(np.mean(steps)) if steps else None
        out[f"reached_{role}"], out[f"runs_{role}"] = sum(t is not None for t in reached), len(runs)
    out["informative"] = not all(first_hits)
    out["faster"] = bool(out["informative"] and out["runs_method"] and out["reached_method"] == out["runs_method"]
                         and out["steps_method"] <= C2_FASTER * out["steps_log"])
    return out


def c3_calibration(ctx: Context, comparisons: list[Comparison]) -> Judgement:
    measurements = []
    alpha = ctx.study.criteria.alpha
    for m in ctx.models:
        task = _of(comparisons, m, ctx.log, ctx.primary)
        if task is None:
            continue
        rows = []
        for key in ("ece_10", "brier"):
            c = _of(comparisons, m, ctx.log, key)
            base = float(np.mean(ctx.test_pairs(ctx.method, ctx.log, m, key)[1]))
            if c is None or base == 0:
                continue  # a metric the runs lack, or a baseline at 0: no relative reduction
            row = Measurement(m, f"{label(key)} reduction vs log-loss (relative)", -c.diff / base, n=c.n, p=c.p,
                              p_adjusted=c.p_adjusted, threshold=C3_REDUCTION,
                              extra={"part": "calibration", "label": label(key)})
            if c.tested:
                row.low, row.high = -c.high / base, -c.low / base
                row.verdict = "pass" if row.value >= C3_REDUCTION and c.diff < 0 and c.p_adjusted < alpha else "fail"
            rows.append(row)
        row = Measurement(m, f"{ctx.primary_label} advantage over log-loss (no worse by the margin)",
                          (1 if ctx.higher_is_better else -1) * task.diff, n=task.n,
                          margin=ctx.study.criteria.margin(ctx.primary), extra={"part": "task"})
        try:
            ni = _no_worse(ctx, m)
            row.low, row.p = ni.bound, ni.p
            row.extra["non_inferiority"] = ni.verdict
            row.verdict = "pass" if ni.verdict == "no worse" else "fail"
        except NotEnoughData:
            pass
        measurements += [*rows, row]
    verdict = overall(_c3_model(measurements, m) for m in ctx.models)
    return Judgement("C3", "≥ 10 % lower ECE or token Brier than log-loss, task metric no worse by the margin", verdict,
                     measurements, family=" and ".join(dict.fromkeys(ctx.study.criteria.family(k) for k in ("ece_10", "brier"))))


def _c3_model(measurements: list[Measurement], model: str) -> str:
    """A model passes C3 when a calibration reduction passes and the task metric is no worse."""
    rows = [r for r in measurements if r.model == model]
    if not rows or all(r.verdict == "not measured" for r in rows):
        return "not measured"
    calibrated = any(r.verdict == "pass" for r in rows if r.extra["part"] == "calibration")
    return "pass" if calibrated and all(r.verdict == "pass" for r in rows if r.extra["part"] == "task") else "fail"


def c4_robustness(ctx: Context, comparisons: list[Comparison]) -> Judgement:
    rows = []
    keys = [(ctx.primary, ctx.primary_label)] if ctx.higher_is_better else []
    keys += [("loss_log", "NLL"), ("ece_10", "ECE")]
    for name in ctx.study.robustness:
        for m in ctx.models:
            for key, shown in keys:
                a, b = ctx.paired(ctx.method, ctx.bounded, m,
                                  lambda r, k=key, n=name: r.evals[n].get(k, np.nan) if n in r.evals else np.nan)
                if not a or np.isnan(a + b).any():
                    ctx.notes.append(f"C4 {name} {m} {shown}: no paired evaluations")
                    continue
                rows.append(paired(a, b, model=m, vs=ctx.bounded, metric=key, label=f"{name} {shown}", family="C4"))
    adjust(rows)
    measurements = []
    for c in rows:
        worse = (c.diff > 0) != (c.metric in GENERATION_SCORES)
        row = Measurement(c.model, f"{c.label}: method − {ctx.bounded}", c.diff, c.low, c.high, c.n, c.p, c.p_adjusted,
                          extra={"label": c.label})
        if c.tested:
            row.verdict = "fail" if worse and c.p_adjusted < ctx.study.criteria.alpha else "pass"
        measurements.append(row)
    return Judgement("C4", f"no significant degradation vs {ctx.bounded} on robustness sets",
                     overall(m.verdict for m in measurements),
                     measurements, family="C4", reason="" if measurements else "no robustness sets evaluated")


def c5_paired_wins(ctx: Context, comparisons: list[Comparison]) -> Judgement:
    """Independent units only: one outcome per model size × seed, the method against log-loss on the task metric,
    a win where it is no worse by the metric's margin."""
    margin, sign = ctx.study.criteria.margin(ctx.primary), 1 if ctx.higher_is_better else -1
    outcomes = []
    for m in ctx.models:
        a, b = ctx.test_pairs(ctx.method, ctx.log, m, ctx.primary)
        outcomes += [sign * (x - y) >= -margin for x, y in zip(a, b, strict=True)]
    text = (f"no worse than log-loss (test {ctx.primary_label}, margin {margin:g}) in ≥ 80 % of independent units "
            f"(model size × seed), binomial p < {ctx.study.criteria.alpha:g}")
    if not outcomes:
        return Judgement("C5", text, "not measured", reason="no paired method and log-loss runs")
    wins, total = sum(outcomes), len(outcomes)
    row = Measurement("all", "share of units no worse than log-loss", wins / total, n=total, p=sign_test(wins, total),
                      margin=margin, threshold=C5_SHARE, extra={"wins": wins, "unit": "model size × seed"})
    minimum = next(n for n in range(1, 64) if 0.5 ** n < ctx.study.criteria.alpha)
    if total < minimum:
        return Judgement("C5", text, "not measured", [row], reason=f"{total} units: a binomial test needs ≥ {minimum} "
                         f"to reach p < {ctx.study.criteria.alpha:g}")
    row.verdict = "pass" if row.value >= C5_SHARE and row.p < ctx.study.criteria.alpha else "fail"
    return Judgement("C5", text, row.verdict, [row])


CRITERIA: tuple[Callable[[Context, list[Comparison]], Judgement], ...] = (
    c1_step_time, c2_task_metric, c3_calibration, c4_robustness, c5_paired_wins,
)
