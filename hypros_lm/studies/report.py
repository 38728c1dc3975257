"""A study's report: report.md (criteria, tables, comparisons, sweep, scaling fits) and its figures, rendered
from the analysis (hypros_lm.studies.analysis) of the runs read back (hypros_lm.studies.results)."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median
from typing import Any

from hypros_lm.evaluation.figures import lambda_and_grad_norms
from hypros_lm.files import write_atomic
from hypros_lm.studies import figures, scaling_figures
from hypros_lm.studies.analysis import analyse
from hypros_lm.studies.report_criteria import comparisons_table, criteria_table, interval, margins_line, more_or_less, p_value
from hypros_lm.studies.report_scaling import scaling_section
from hypros_lm.studies.results import (
    COMPARED,
    EFFICIENCY,
    GENERATION_SCORES,
    RunResult,
    read_runs,
    read_timings,
    task_metric,
)
from hypros_lm.studies.spec import Study, grid_value


def write_report(study: Study, folder: Path, out: Path, *, note: str = "") -> Path:
    """Analyse the study folder and write report.md with its figures into ``out``."""
    runs, skipped = read_runs(folder, study)
    res = analyse(study, runs, read_timings(folder))
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(study, folder, runs, res, out)
    lines = _header(study, res, note) + criteria_table(res) + margins_line(res) + _results_table(study, runs, res)
    lines += _efficiency_table(res) + _robustness_table(study, res) + comparisons_table(res)
    if res["sweep"]:
        lines += _sweep_section(study, res["sweep"], res["alpha"])
    lines += scaling_section(res["scaling"], study_minutes(folder))
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figs]
    if res["notes"] or skipped:
        lines += ["", "## Comparisons not made", ""] + [f"- {n}" for n in skipped + res["notes"]]
    path = out / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    write_atomic(out / "analysis.json", json.dumps(res, indent=2, default=str))
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
             f"{', '.join(res['models'])}; {seeds_stated(res)}. Method `{study.baselines.method}`, log-loss baseline "
             f"`{study.baselines.log}`, bounded baseline `{study.baselines.bounded}`.", ""]
    return lines + ([note, ""] if note else [])


def seeds_stated(res: dict[str, Any]) -> str:
    """The seeds as they are: one count where every cell ran the same seeds, else each size's."""
    cells = res["seeds_per_cell"]
    if len({tuple(c["seeds"]) for c in cells}) == 1:
        seeds = cells[0]["seeds"]
        return f"**{len(seeds)} seed{'s' * (len(seeds) != 1)}** in every cell ({', '.join(map(str, seeds))})"
    by_model: dict[str, set[int]] = {}
    for c in cells:
        by_model.setdefault(c["model"], set()).add(len(c["seeds"]))
    return "seeds per cell: " + ", ".join(f"{m} {'/'.join(map(str, sorted(n)))}" for m, n in by_model.items())


def _results_table(study: Study, runs: list[RunResult], res: dict[str, Any]) -> list[str]:
    scores = [k for k in GENERATION_SCORES if any(k in r for r in res["summary"])]  # generation tasks: BLEU, ...
    lines = ["", "## Results (mean ± std over n seeds)", "",
             "| model | params | variation | n | " + "".join(f"test {GENERATION_SCORES[k]} | " for k in scores)
             + "test NLL | test Brier | test ECE | accuracy | val NLL area | steps to target | s/step |",
             "|---|---|---|---|" + "---|" * len(scores) + "---|---|---|---|---|---|---|"]
    for r in res["summary"]:
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['variation']} | {r['seeds']} | "
                     + "".join(f"{_fmt(r.get(k))} | " for k in scores)
                     + f"{_fmt(r['nll'])} | {_fmt(r['brier'])} | {_fmt(r['ece_10'])} | {_fmt(r['accuracy'])} | "
                     f"{_fmt(r['auc'])} | {_steps(r)} | {_fmt(r['step_time'])} |")
    every = median([b["step"] - a["step"] for r in runs for a, b in zip(r.curve, r.curve[1:], strict=False)] or [0])
    rule = ("the study file's level" if res["target_rule"] == "study" else
            "the log-loss baseline's mean final value at each size, a level only its better runs reach")
    return lines + ["", f"Time-to-target: the step at which validation {study.target.metric} first reaches {rule} ("
                    + ", ".join(f"{m}: {t:.4f}" for m, t in res["targets"].items())
                    + f"), interpolated linearly between evaluations (every {every:g} steps); \"never\" where a run "
                    "does not reach it (k/n: k of the cell's n runs did)."]


def _steps(row: dict[str, Any]) -> str:
    if row["ttt_steps"] is not None:
        return _fmt(row["ttt_steps"])
    return f"never ({row['ttt_reached']}/{row['seeds']})" if row["ttt_reached"] else "never"


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


def _sweep_section(study: Study, rows: list[dict[str, Any]], alpha: float) -> list[str]:
    reference, metric = study.sweep.variation, study.sweep.metric
    axes = list(study.grid_cells[reference])
    label = {**dict(COMPARED), **{k: f"test {v}" for k, v in GENERATION_SCORES.items()}}.get(metric, f"test {metric}")
    lines = ["", f"## Sensitivity: {' × '.join(axes)} ({label}, mean ± std over n seeds)", "",
             f"Each cell against the reference `{reference}` ("
             + ", ".join(f"{k} = {grid_value(v)}" for k, v in study.grid_cells[reference].items())
             + ") over the same seeds: the mean difference, its 95 % t interval, the paired t-test's p and Holm's "
             f"adjusted p over the model's cells; * where the adjusted p < {alpha:g}. Heat-maps: `sweep_heatmaps.png`.",
             "", "| model | " + " | ".join(axes) + f" | n | {label} | vs reference | 95 % t interval | p | p (Holm) | |",
             "|---|" + "---|" * len(axes) + "---|---|---|---|---|---|---|"]
    for r in rows:
        diff = "reference" if r["reference"] else (more_or_less(r["diff"], ".4g") if r["diff"] is not None else "—")
        lines.append(f"| {r['model']} | " + " | ".join(grid_value(r["values"][a]) for a in axes)
                     + f" | {r['n']} | {_fmt(r['value'])} | {diff} | "
                     + ("—" if r["low"] is None else interval(r["low"], r["high"], "+.3g"))
                     + f" | {p_value(r['p'])} | {p_value(r['p_adjusted'])} | {'*' if r['significant'] else ''} |")
    return lines


def study_minutes(folder: Path) -> float | None:
    """The runs' training and evaluation minutes over every invocation of the runner (its ``wallclock.jsonl``),
    summed: the study's wall-clock where one runner made them one after another."""
    path = Path(folder) / "wallclock.jsonl"
    if not path.is_file():
        return None
    return sum(json.loads(line)["seconds"] for line in path.read_text().splitlines() if line.strip()) / 60


