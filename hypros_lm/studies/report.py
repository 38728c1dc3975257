"""A study's report: report.md (criteria, tables, comparisons, sweep, scaling fits) and its figures, rendered
from the analysis (hypros_lm.studies.criteria) of the runs read back (hypros_lm.studies.results)."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median
from typing import Any

from hypros_lm.evaluation.figures import lambda_and_grad_norms
from hypros_lm.studies import figures, scaling_figures
from hypros_lm.studies.criteria import analyse, more_or_less
from hypros_lm.studies.results import (
    COMPARED,
    EFFICIENCY,
    GENERATION_SCORES,
    RunResult,
    read_runs,
    read_timings,
    task_metric,
)
from hypros_lm.studies.scaling import ALPHA_BOUNDS
from hypros_lm.studies.spec import Study, grid_value


def write_report(study: Study, folder: Path, out: Path, *, note: str = "") -> Path:
    """Analyse the study folder and write report.md with its figures into ``out``."""
    runs, skipped = read_runs(folder, study)
    res = analyse(study, runs, read_timings(folder))
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(study, folder, runs, res, out)
    lines = _header(study, res, note) + _criteria_table(res) + _results_table(study, runs, res)
    lines += _efficiency_table(res) + _robustness_table(study, res) + _comparisons_table(res)
    if res["sweep"]:
        lines += _sweep_section(study, res["sweep"])
    lines += _scaling_section(res, folder)
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figs]
    if res["notes"] or skipped:
        lines += ["", "## Comparisons not made", ""] + [f"- {n}" for n in skipped + res["notes"]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "analysis.json").write_text(json.dumps(res, indent=2, default=str))
    return path


def _figures(study: Study, folder: Path, runs: list[RunResult], res: dict[str, Any], out: Path) -> list[Path]:
    models, variations = res["models"], res["variations"]
    figs = [figures.learning_curves(runs, models, variations, out, x="step"),
            figures.learning_curves(runs, models, variations, out, x="elapsed_s")]
    if any("test" in r.evals for r in runs):
        figs.append(figures.calibration(runs, models, variations, out))
    sets = [s for s in study.evaluations if any(s in r.evals for r in runs)]
    if sets:
        figs.append(figures.robustness(runs, models, variations, sets, out, primary=task_metric(study)))
    if res["scaling"]:
        figs += scaling_figures.all_figures(res["scaling"], runs, variations, out)
    if res["sweep"]:
        figs.append(figures.sweep_heatmaps(res["sweep"], study, models, out))
    largest = [folder / r.name for r in runs if r.model == models[-1] and r.seed == res["seeds"][0]]
    figs.append(lambda_and_grad_norms(largest, out))
    return figs


def _pct(ms) -> str:
    if ms is None:
        return "—"
    mean, std, n = ms
    return f"{mean * 100:.1f} % ± {std * 100:.1f}" if n > 1 else f"{mean * 100:.1f} %"


def _fmt(ms) -> str:
    if ms is None:
        return "never"
    mean, std, n = ms
    return f"{mean:.4g} ± {std:.2g}" if n > 1 else f"{mean:.4g}"


def _header(study: Study, res: dict[str, Any], note: str) -> list[str]:
    lines = [f"# Study `{study.name}`", "", study.description, "",
             f"{res['runs']} finished runs: variations {', '.join(res['variations'])}; model sizes "
             f"{', '.join(res['models'])}; **{len(res['seeds'])} seeds** ({', '.join(map(str, res['seeds']))}). "
             f"Method `{study.baselines['method']}`, log-loss baseline `{study.baselines['log']}`, bounded baseline "
             f"`{study.baselines['bounded']}`.", ""]
    return lines + ([note, ""] if note else [])


def _criteria_table(res: dict[str, Any]) -> list[str]:
    lines = ["## Criteria", "", "| | criterion | measured | verdict |", "|---|---|---|---|"]
    for c in res["criteria"]:
        verdict = "NOT MEASURED" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        lines.append(f"| {c['id']} | {c['text']} | {c['value']} | **{verdict}** |")
    for cid in sorted({"C1", "C2", "C3", "C4", "C5"} - {c["id"] for c in res["criteria"]}):
        lines.append(f"| {cid} | — | could not be evaluated (see notes) | **NOT EVALUATED** |")
    return lines


def _results_table(study: Study, runs: list[RunResult], res: dict[str, Any]) -> list[str]:
    scores = [k for k in GENERATION_SCORES if any(k in r for r in res["summary"])]  # generation tasks: BLEU, ...
    lines = ["", "## Results (mean ± std over seeds)", "",
             "| model | params | variation | " + "".join(f"test {GENERATION_SCORES[k]} | " for k in scores)
             + "test NLL | test Brier | test ECE | accuracy | val NLL area | steps to target | s/step |",
             "|---|---|---|" + "---|" * len(scores) + "---|---|---|---|---|---|---|"]
    for r in res["summary"]:
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['variation']} | "
                     + "".join(f"{_fmt(r.get(k))} | " for k in scores)
                     + f"{_fmt(r['nll'])} | {_fmt(r['brier'])} | {_fmt(r['ece_10'])} | {_fmt(r['accuracy'])} | "
                     f"{_fmt(r['auc'])} | {_fmt(r['ttt_steps'])} | {_fmt(r['step_time'])} |")
    interval = median([b["step"] - a["step"] for r in runs for a, b in zip(r.curve, r.curve[1:], strict=False)] or [0])
    return lines + ["", f"Time-to-target: the step at which validation {study.target.get('metric', 'loss_log')} first "
                    "reaches " + ", ".join(f"{m}: {t:.4f}" for m, t in res["targets"].items())
                    + f", interpolated linearly between evaluations (every {interval:g} steps)."]


def _efficiency_table(res: dict[str, Any]) -> list[str]:
    lines = ["", "## Efficiency (mean over seeds of each run's median over logged steps; — where not logged)", "",
             "| model | variation | s/step | " + " | ".join(label for _, label in EFFICIENCY) + " |",
             "|---|---|---|" + "---|" * len(EFFICIENCY)]
    for r in res["summary"]:
        lines.append(f"| {r['model']} | {r['variation']} | {_fmt(r['step_time'])} | "
                     + " | ".join(_fmt(r[f"eff:{k}"]) if r[f"eff:{k}"] else "—" for k, _ in EFFICIENCY) + " |")
    return lines


def _robustness_table(study: Study, res: dict[str, Any]) -> list[str]:
    if not study.robustness:
        return []
    primary = task_metric(study)
    score, shown = (primary, GENERATION_SCORES[primary]) if primary else ("accuracy", "accuracy")
    lines = ["", "## Robustness (perturbations and domain shift)", "",
             f"Relative degradation: (test {shown} − {shown} on the set) / test {shown}, per run"
             + (" (a perturbed evaluation: against its own clean sources)" if primary else "") + ", then mean ± std.",
             "", f"| model | variation | set | {shown} | NLL | ECE | rel. degradation |", "|---|---|---|---|---|---|---|"]
    for r in res["summary"]:
        for s in study.robustness:
            lines.append(f"| {r['model']} | {r['variation']} | {s} | {_fmt(r.get(f'{s}:{score}'))} | "
                         f"{_fmt(r.get(f'{s}:nll'))} | {_fmt(r.get(f'{s}:ece_10'))} | {_pct(r.get(f'{s}:drop'))} |")
    return lines


def _comparisons_table(res: dict[str, Any]) -> list[str]:
    lines = ["", "## Paired comparisons of the method", "",
             "| model | vs | metric | n | mean difference | 95 % bootstrap CI | paired t | p |", "|---|---|---|---|---|---|---|---|"]
    for c in res["comparisons"]:
        lines.append(f"| {c['model']} | {c['vs']} | {c['metric']} | {c['n']} | {c['diff']:+.4g} | "
                     f"[{c['ci'][0]:+.3g}, {c['ci'][1]:+.3g}] | {c['t']:.3g} | {c['p']:.3g} |")
    return lines


def _sweep_section(study: Study, rows: list[dict[str, Any]]) -> list[str]:
    reference, metric = study.sweep["variation"], study.sweep["metric"]
    axes = list(study.grid_cells[reference])
    label = {**dict(COMPARED), **{k: f"test {v}" for k, v in GENERATION_SCORES.items()}}.get(metric, f"test {metric}")
    lines = ["", f"## Sensitivity: {' × '.join(axes)} ({label}, mean ± std over seeds)", "",
             f"Each cell against the reference `{reference}` ("
             + ", ".join(f"{k} = {grid_value(v)}" for k, v in study.grid_cells[reference].items())
             + ") over the same seeds: paired t-test, * where p < 0.05. Heat-maps: `sweep_heatmaps.png`.", "",
             "| model | " + " | ".join(axes) + f" | {label} | vs reference | p | |", "|---|" + "---|" * len(axes) + "---|---|---|---|"]
    for r in rows:
        diff = "reference" if r["reference"] else (more_or_less(r["diff"], ".4g") if r["diff"] is not None else "—")
        p = f"{r['p']:.3g}" if r["p"] is not None else "—"
        lines.append(f"| {r['model']} | " + " | ".join(grid_value(r["values"][a]) for a in axes)
                     + f" | {_fmt(r['value'])} | {diff} | {p} | {'*' if r['significant'] else ''} |")
    return lines


def _ci(value: float, ci: list[float], fmt: str = ".3g") -> str:
    return f"{value:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def study_minutes(folder: Path) -> float | None:
    """The study's wall-clock over every invocation of the runner (its ``wallclock.jsonl``), in minutes."""
    path = Path(folder) / "wallclock.jsonl"
    if not path.is_file():
        return None
    return sum(json.loads(line)["seconds"] for line in path.read_text().splitlines() if line.strip()) / 60


def _scaling_section(res: dict[str, Any], folder: Path) -> list[str]:
    sc = res["scaling"]
    if not sc:
        return []
    minutes = study_minutes(folder)
    lines = ["", "## Scaling laws L(N) = E + A·N^(−α)", ""]
    if minutes is not None:
        lines += [f"The whole study (every run and its evaluations) took **{minutes:.0f} minutes** of wall-clock.", ""]
    lines += ["Each size's budget and learning rate (D = k·N tokens, N the total parameters; FLOPs count the head and "
              "attention):", "", "| model | parameters | non-embedding | tokens | training FLOPs | steps | lr |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    seen = {}
    for r in sc["runs"]:
        seen.setdefault(r["model"], r)
    for r in sorted(seen.values(), key=lambda r: r["params"]):
        non_embedding = f"{r['non_embedding_params']:,}" if r["non_embedding_params"] is not None else "—"
        lines.append(f"| {r['model']} | {r['params']:,} | {non_embedding} | {r['tokens']:,} | "
                     f"{r['flops']:.3g} | {r['max_steps']:,} | {r['lr']:.3g} |")
    lines += _lr_sweep_lines(sc.get("lr_sweep"))
    lines += ["", "| objective | metric | α [95 % CI] | E [95 % CI] | A | sizes × runs |", "|---|---|---|---|---|---|"]
    for key, law in sc["laws"].items():
        v, metric = key.split(":")
        if not law["identified"]:
            lines.append(f"| {v} | {metric} | not identified: {law['reason']} | | | |")
            continue
        lines.append(f"| {v} | {metric} | {_ci(law['alpha'], law['alpha_ci'])} | {_ci(law['E'], law['E_ci'], '.4g')} | "
                     f"{law['A']:.4g} | {law['sizes']} × {law['runs']} |")
    lines += ["", "**Does the objective change the exponent or the offset?** "
              f"Verdict (test NLL): {sc.get('verdict', 'not computed')}.", ""]
    for metric, t in sc["shared_alpha"].items():
        verdict = "a shared α suffices" if t["delta_aic"] <= 0 else "separate α's fit better"
        if not ALPHA_BOUNDS[0] + 0.01 < t["alpha_shared"] < ALPHA_BOUNDS[1] - 0.01:
            verdict += "; but the shared α lies at its bound, so no exponent is compared"
        lines.append(f"- {metric}: one shared α = {t['alpha_shared']:.3g} (each objective its own E, A) against "
                     f"separate α's: likelihood ratio {t['lr_statistic']:.3g} on {t['df']} df, p = {t['p']:.3g}; "
                     f"ΔAIC (shared − separate) = {t['delta_aic']:.3g} ({verdict})")
    for name, d in sc["differences"].items():
        holds = d["ci"][0] <= 0 <= d["ci"][1]
        lines.append(f"- α_{name.replace('-', ' − α_')} (test NLL) = {_ci(d['alpha'], d['ci'])}: "
                     f"{'the interval holds 0, no exponent difference is shown' if holds else 'the exponents differ'}")
    for name, m in sc["multipliers"].items():
        lines.append(f"- compute multiplier at {m['at_params']:,} parameters: {name} needs "
                     f"{_ci(m['value'], m['ci'])}× the compute (at D = k·N; > 1: the other objective is ahead)")
    lines += _log_linear_lines(sc)
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
                         f"{f['law']['A']:.3g}·C^−{f['law']['alpha']:.3g} over the lower envelope of its learning curves")
    return lines


def _log_linear_lines(sc: dict[str, Any]) -> list[str]:
    """The α → 0 limit of the laws, L = c − b·ln N: each objective's slope and its difference from log-loss's."""
    fits = sc.get("log_linear") or {}
    if not fits:
        return []
    slopes = "; ".join(f"{v} {_ci(f['b'], f['b_ci'])}" for v, f in fits.items())
    lines = [f"- in the α → 0 limit of the law, L = c − b·ln N (b: test NLL removed per e-fold of parameters): {slopes}"]
    for name, d in sc.get("log_linear_differences", {}).items():
        holds = d["ci"][0] <= 0 <= d["ci"][1]
        lines.append(f"- b_{name.replace('-', ' − b_')} = {_ci(d['b'], d['ci'])}: "
                     + ("the interval holds 0, the same rate at these sizes (an offset alone)" if holds
                        else f"{'faster' if d['b'] > 0 else 'slower'} than log-loss at these sizes (the rate differs)"))
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
    lines += ["", f"Rule through the inside optima: lr(N) = {rule['value']:.3g}·(N/{rule['reference']:g})^−{rule['exponent']:.3g}"
              if rule else "No rule: fewer than two sizes have their best rate inside the sweep."]
    return lines
