"""The criteria and the paired comparisons in words: the report's sentences, rendered from analysis.json's numbers
(studies/schema.py) and from nothing else."""

from __future__ import annotations

from typing import Any

from hypros_lm.studies.sections import DEFAULT_MARGINS


def more_or_less(amount: float, fmt: str, up: str = "higher", down: str = "lower") -> str:
    """'0.1412 higher' / '19.1 lower': a measured change with its direction in words, never a bare sign."""
    if amount == 0:
        return f"{0:{fmt}} (no change)"
    return f"{abs(amount):{fmt}} {up if amount > 0 else down}"


def interval(low: float | None, high: float | None, fmt: str = ".3g") -> str:
    return "no interval" if low is None else f"[{low:{fmt}}, {high:{fmt}}]"


def p_value(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def criteria_table(res: dict[str, Any]) -> list[str]:
    lines = ["## Criteria", "",
             f"Verdicts read Holm-adjusted p-values at α = {res['alpha']:g} (the family each criterion's tests were "
             "adjusted within is named); \"no worse\" is non-inferiority by the stated margin (the one-sided 95 % t "
             "bound above −margin); intervals are 95 % t intervals over n paired seeds. `not measured`: too few seeds "
             "or units to judge." + (" A pilot (`criteria: {pilot: true}`): fewer than three seeds were allowed."
                                      if res["pilot"] else ""), "", "| | criterion | measured | verdict |", "|---|---|---|---|"]
    for c in res["criteria"]:
        measured = "; ".join(MEASURED[c["id"]](m) for m in c["measurements"]) or "—"
        if c["family"]:
            measured += f" (Holm family: {c['family']})"
        if c["reason"]:
            measured = f"{c['reason']}; {measured}" if c["measurements"] else c["reason"]
        lines.append(f"| {c['id']} | {c['text']} | {measured} | **{c['verdict'].upper()}** |")
    return lines


def _c1(m: dict[str, Any]) -> str:
    change = more_or_less((m["value"] - 1) * 100, ".1f", "% slower", "% faster")
    medians = (f"medians {m['extra']['method_s']:.4f} vs {m['extra']['log_s']:.4f} s/step; "
               if "method_s" in m["extra"] else "")
    unit = "alternated pairs" if m["extra"]["source"] == "interleaved timing" else "paired runs"
    return (f"{m['model']}: {change} ({medians}95 % t interval of the step ratio "
            f"{interval(m['low'], m['high'], '.3f')} over {m['n']} {unit})")


def _c2(m: dict[str, Any]) -> str:
    e = m["extra"]
    if m["low"] is None:
        return f"{m['model']}: {m['quantity']} {m['value']:+.4g}, n = {m['n']}: no test"
    steps = [f"{e['steps_' + r]:.0f} ({e['reached_' + r]}/{e['runs_' + r]} reached it)" for r in ("method", "log")]
    target = f"steps to the target {e['target']:.4f}: {steps[0]} vs {steps[1]}"
    if not e["informative"]:
        target += " (uninformative: every run reached it at its first evaluation)"
    return (f"{m['model']}: {m['quantity']} {m['value']:+.4g} {interval(m['low'], m['high'], '+.3g')}, n = {m['n']}, "
            f"Holm p = {p_value(m['p_adjusted'])}, against 0.3σ_log = {m['threshold']:.3g}; matched by margin "
            f"{m['margin']:g}: {e['matched']} (bound {e['matched_bound']:+.3g}); {target}")


def _c3(m: dict[str, Any]) -> str:
    if m["extra"]["part"] == "task":
        if m["p"] is None:
            return f"{m['model']}: {m['quantity']}: n = {m['n']}, no test"
        return (f"{m['model']}: {m['quantity']} {m['value']:+.4g}, one-sided bound {m['low']:+.3g} against "
                f"−{m['margin']:g}: {m['extra']['non_inferiority']}")
    rel = more_or_less(m["value"] * 100, ".1f", "% lower", "% higher")
    if m["low"] is None:
        return f"{m['model']}: {m['extra']['label']} {rel}, n = {m['n']}: no test"
    return (f"{m['model']}: {m['extra']['label']} {rel} "
            f"{interval(m['low'] * 100, m['high'] * 100, '.1f')} %, Holm p = {p_value(m['p_adjusted'])}")


def _c4(m: dict[str, Any]) -> str:
    if m["low"] is None:
        return f"{m['quantity']} {m['model']}: n = {m['n']}, no test"
    return (f"{m['extra']['label']} {m['model']}: {more_or_less(m['value'], '.4f')} "
            f"{interval(m['low'], m['high'], '+.3g')}, Holm p = {p_value(m['p_adjusted'])}")


def _c5(m: dict[str, Any]) -> str:
    return (f"{m['extra']['wins']}/{m['n']} units ({m['extra']['unit']}) no worse by {m['margin']:g}: "
            f"{m['value'] * 100:.0f} %, binomial p = {m['p']:.2g}")


MEASURED = {"C1": _c1, "C2": _c2, "C3": _c3, "C4": _c4, "C5": _c5}


def comparisons_table(res: dict[str, Any]) -> list[str]:
    lines = ["", "## Paired comparisons of the method", "",
             "Method − baseline over the seeds both ran (n): the mean difference, its 95 % t interval, the paired t-test's "
             "p and Holm's adjusted p within the family named (one family per metric across sizes and baselines unless "
             "the study file groups them). n < 3: no test.", "",
             "| model | vs | metric | n | mean difference | 95 % t interval | t | p | p (Holm) | family |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in res["comparisons"]:
        if not c["tested"]:
            lines.append(f"| {c['model']} | {c['vs']} | {c['label']} | {c['n']} | {c['diff']:+.4g} | no test (n < 3) "
                         f"| — | — | — | {c['family']} |")
            continue
        lines.append(f"| {c['model']} | {c['vs']} | {c['label']} | {c['n']} | {c['diff']:+.4g} | "
                     f"{interval(c['low'], c['high'], '+.3g')} | {c['t']:.3g} | {p_value(c['p'])} | "
                     f"{p_value(c['p_adjusted'])} | {c['family']} |")
    return lines


def margins_line(res: dict[str, Any]) -> list[str]:
    """The non-inferiority margins the verdicts used, with where each came from."""
    parts = [f"{k} {v:g}" + ("" if DEFAULT_MARGINS.get(k) == v else " (the study file's)") for k, v in res["margins"].items()]
    return ["", f"Margins (\"no worse\" by, in each metric's units): {', '.join(parts)}."]
