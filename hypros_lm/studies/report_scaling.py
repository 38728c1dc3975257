"""A scaling study's section of the report, in words, from analysis.json's scaling numbers
(studies/scaling_study.py): budgets, the fit window, the laws, the local slopes, the window sensitivity, the
comparisons between objectives and the compute frontier."""

from __future__ import annotations

from typing import Any

from hypros_lm.studies.report_criteria import interval
from hypros_lm.studies.scaling import ALPHA_BOUNDS

VERDICTS = {
    "offset": "offset: one shared α fits the objectives (ΔAIC ≤ 0) and every α difference's interval holds 0",
    "exponent": "exponent: separate α's fit better (ΔAIC > 0) and an α difference's interval excludes 0",
    "fewer than two": "no verdict: fewer than two objectives with identified laws",
    "disagree": "no verdict: the shared-α test and the α differences' intervals disagree",
}


def verdict_words(v: dict[str, Any]) -> str:
    if v["why"] == "unidentified":
        return f"no verdict: the test-NLL law of {', '.join(v['unidentified'])} is not identified"
    return VERDICTS[v["kind"] if v["kind"] != "none" else v["why"]]


def _ci(value: float, low: float, high: float, fmt: str = ".3g") -> str:
    return f"{value:{fmt}} {interval(low, high, fmt)}"


def scaling_section(sc: dict[str, Any], minutes: float | None) -> list[str]:
    if not sc:
        return []
    lines = ["", "## Scaling laws L(N) = E + A·N^(−α)", ""]
    if minutes is not None:
        lines += [f"The runs (training and evaluations) took **{minutes:.0f} minutes** summed over runs (the wall-clock "
                  "where one runner made them one after another).", ""]
    lines += _budgets(sc) + _lr_sweep_lines(sc.get("lr_sweep"))
    window = sc["fit_window"]
    lines += ["", f"Laws, slopes and their comparisons are fitted on {window['sizes']} sizes"
              + (f", from {window['from_model']} up (the study file's `scaling.fit_from`)" if window["from_model"]
                 else " (every size)") + f"; their 95 % intervals resample {sc['intervals']}.", "",
              "| objective | metric | α [95 % CI] | E [95 % CI] | A | sizes × runs |", "|---|---|---|---|---|---|"]
    for law in sc["laws"]:
        v, metric = law["variation"], law["metric"]
        if not law["identified"]:
            lines.append(f"| {v} | {metric} | not identified: {law['reason']} | | | |")
            continue
        lines.append(f"| {v} | {metric} | {_ci(law['alpha'], *law['alpha_ci'])} | {_ci(law['E'], *law['E_ci'], '.4g')} | "
                     f"{law['A']:.4g} | {law['sizes']} × {law['runs']} |")
    lines += ["", f"**Does the objective change the exponent or the offset?** Verdict (test NLL): "
              f"{verdict_words(sc['verdict'])}.", ""]
    lines += _comparison_lines(sc) + _local_slope_lines(sc) + _window_lines(sc)
    return lines


def _budgets(sc: dict[str, Any]) -> list[str]:
    lines = ["Each size's budget and learning rate (D = k·N tokens, N the total parameters; FLOPs count the head and "
             "attention):", "", "| model | parameters | non-embedding | tokens | training FLOPs | steps | lr |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    seen: dict[str, dict[str, Any]] = {}
    for r in sc["runs"]:
        seen.setdefault(r["model"], r)
    for r in sorted(seen.values(), key=lambda r: r["params"]):
        non_embedding = f"{r['non_embedding_params']:,}" if r["non_embedding_params"] is not None else "—"
        lines.append(f"| {r['model']} | {r['params']:,} | {non_embedding} | {r['tokens']:,} | "
                     f"{r['flops']:.3g} | {r['max_steps']:,} | {r['lr']:.3g} |")
    return lines


def _comparison_lines(sc: dict[str, Any]) -> list[str]:
    lines = []
    for metric, t in sc["shared_alpha"].items():
        verdict = "a shared α suffices" if t["delta_aic"] <= 0 else "separate α's fit better"
        if not ALPHA_BOUNDS[0] + 0.01 < t["alpha_shared"] < ALPHA_BOUNDS[1] - 0.01:
            verdict += "; but the shared α lies at its bound, so no exponent is compared"
        lines.append(f"- {metric}: one shared α = {t['alpha_shared']:.3g} (each objective its own E, A) against "
                     f"separate α's: likelihood ratio {t['lr_statistic']:.3g} on {t['df']} df, p = {t['p']:.3g}; "
                     f"ΔAIC (shared − separate) = {t['delta_aic']:.3g} ({verdict})")
    for d in sc["differences"]:
        holds = d["low"] <= 0 <= d["high"]
        lines.append(f"- α_{d['variation']} − α_{d['reference']} (test NLL) = {_ci(d['alpha'], d['low'], d['high'])}: "
                     f"{'the interval holds 0, no exponent difference is shown' if holds else 'the exponents differ'}")
    for m in sc["multipliers"]:
        lines.append(f"- compute multiplier at {m['at_params']:,} parameters: {m['reference']} needs "
                     f"{_ci(m['value'], m['low'], m['high'])}× the compute to match {m['variation']} (at D = k·N; > 1: "
                     f"{m['variation']} is ahead)")
    fits = sc.get("log_linear") or {}
    if fits:
        slopes = "; ".join(f"{v} {_ci(f['b'], *f['b_ci'])}" for v, f in fits.items())
        lines.append(f"- in the α → 0 limit of the law, L = c − b·ln N (b: test NLL removed per e-fold of parameters): "
                     f"{slopes}")
    for d in sc.get("log_linear_differences", []):
        holds = d["low"] <= 0 <= d["high"]
        lines.append(f"- b_{d['variation']} − b_{d['reference']} = {_ci(d['b'], d['low'], d['high'])}: "
                     + ("the interval holds 0, the same rate at these sizes (an offset alone)" if holds
                        else f"{'faster' if d['b'] > 0 else 'slower'} than {d['reference']} at these sizes"))
    for v, llo in sc["leave_largest_out"].items():
        if llo:
            lines.append(f"- leave the largest size out ({v}): the law of the smaller sizes predicts test NLL "
                         f"{llo['predicted']:.4f} at {llo['size']:,.0f} parameters, observed {llo['observed']:.4f} "
                         f"(error {llo['error']:+.4f}, {100 * llo['relative_error']:+.2f} %)")
    for v, f in sc["frontier"].items():
        if f["law"] and f["law"]["at_bound"]:
            lines.append(f"- compute frontier ({v}): no law (the fitted α lies at its bound; the envelope of its "
                         f"learning curves is in compute_frontier.png)")
        elif f["law"]:
            lines.append(f"- compute frontier ({v}): validation NLL = {f['law']['E']:.3g} + "
                         f"{f['law']['A']:.3g}·C^−{f['law']['alpha']:.3g} over the lower envelope of its learning curves "
                         f"(a running minimum; a point before a run's end is a checkpoint mid-schedule, not a run "
                         f"trained to that compute)")
    return lines


def _local_slope_lines(sc: dict[str, Any]) -> list[str]:
    slopes = sc.get("local_slopes") or {}
    if not slopes:
        return []
    first = next(iter(slopes.values()))
    lines = ["", "Local slopes: test NLL removed per e-fold of parameters between successive sizes, "
             "b = −ΔL/Δln N, with a 95 % t interval from the seeds (Welch). A law that holds changes its slope "
             "smoothly; jumps show misspecification.", "",
             "| objective | " + " | ".join(f"{r['from']:,.0f} → {r['to']:,.0f}" for r in first) + " |",
             "|---|" + "---|" * len(first)]
    for v, rows in slopes.items():
        lines.append(f"| {v} | " + " | ".join(_ci(r["b"], r["low"], r["high"]) if r["low"] is not None
                                            else f"{r['b']:.3g}" for r in rows) + " |")
    return lines


def _window_lines(sc: dict[str, Any]) -> list[str]:
    windows = sc.get("windows") or {}
    if not windows:
        return []
    first = next(iter(windows.values()))
    lines = ["", "Window sensitivity: the slope b in ln N and the law's α fitted on every contiguous window of ≥ 4 "
             "sizes (α at its bound: —)" + ("; and each objective's slope minus log-loss's" if sc.get("window_differences")
                                            else "") + ".", "",
             "| objective | " + " | ".join(f"{w['from']:,.0f}–{w['to']:,.0f}" for w in first) + " |",
             "|---|" + "---|" * len(first)]
    for v, rows in windows.items():
        lines.append(f"| {v}: b, α | " + " | ".join(f"{w['b']:.3g}, " + ("—" if w["at_bound"] else f"{w['alpha']:.3g}")
                                                 for w in rows) + " |")
    for v, rows in (sc.get("window_differences") or {}).items():
        lines.append(f"| b_{v} − b_log | " + " | ".join(f"{w['b']:+.3g}" for w in rows) + " |")
    return lines


def _lr_sweep_lines(sweep: dict[str, Any] | None) -> list[str]:
    if not sweep:
        return []
    lines = ["", "The learning-rate sweep: mean test NLL at each rate, the best, and whether it lies inside the sweep "
             "(an optimum at an edge is not located):", "", "| model | parameters | test NLL at each lr | best lr | inside | "
             "parabola's optimum |", "|---|---:|---|---:|---|---:|"]
    for r in sweep["sizes"]:
        cells = ", ".join(f"{lr:.3g}: {v:.4f}" for lr, v in zip(r["lrs"], r["nll"], strict=True))
        lines.append(f"| {r['model']} | {r['params']:,} | {cells} | {r['best']:.3g} | {'yes' if r['inside'] else 'no'} | "
                     f"{r['optimum']:.3g} |")
    rule = sweep["rule"]
    if not rule:
        return lines + ["", "No rule: fewer than two sizes have their best rate inside the sweep."]
    lines += ["", f"Rule through the inside optima: lr(N) = {rule['value']:.3g}·(N/{rule['reference']:g})^−{rule['exponent']:.3g}"]
    if "value_ci" in rule:
        lines[-1] += (f"; 95 % intervals from resampling each cell's seeds ({rule['resamples']} resamples): value "
                      f"{interval(*rule['value_ci'])}, exponent {interval(*rule['exponent_ci'])}")
    return lines
