"""Turn a study's run folders into tables, statistics, the five criteria and figures (reads files only).

Criteria (the study's own), each reported with its measured value and a verdict:
  C1 step-time overhead of the method vs log-loss ≤ 3 %.
  C2 final task metric (test NLL for pretraining) ≥ 0.3σ better than log-loss, or matched (within 0.3σ)
     with ≥ 25 % fewer steps to the target validation loss.
  C3 ≥ 10 % lower test ECE or token Brier than log-loss, with a task metric not significantly worse.
  C4 no significant degradation (paired t-test, p < 0.05) vs the bounded-score baseline on the robustness sets.
  C5 positive or neutral (within 1 %) in ≥ 80 % of all paired comparisons, binomial p < 0.05.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import yaml

from hypros_lm.studies.spec import Study, grid_value
from hypros_lm.studies.stats import (
    NotEnoughData,
    bootstrap_ci,
    curve_area,
    identified_power_law,
    mean_std,
    paired_t_test,
    sign_test,
    time_to_target,
)

# Telemetry from the runs' metrics.jsonl (each run's median over its logged steps; absent in runs that
# did not log a field, e.g. MFU on CPU without telemetry.peak_tflops, or energy without NVML)
EFFICIENCY = (("tokens_per_s", "tokens/s"), ("tflops_per_device", "TFLOP/s per device"), ("mfu", "MFU"),
              ("peak_mem_mb", "peak memory MiB"), ("model_state_mb", "model states MiB"),
              ("energy_j_per_step", "energy J/step"))
COMPARED = (("nll", "test NLL"), ("brier", "test Brier"), ("ece_10", "test ECE (10 bins)"), ("auc", "val NLL curve area"))


@dataclass
class RunResult:
    name: str
    variation: str
    model: str
    seed: int
    params: int
    tokens: int
    max_steps: int
    curve: list[dict[str, Any]]  # validation records
    train: list[dict[str, Any]]
    evals: dict[str, dict[str, Any]]
    test: dict[str, float] = field(default_factory=dict)

    @property
    def step_time(self) -> float:
        """Median seconds per optimizer step over the logged training intervals."""
        per_step = [r["tokens"] / r["step"] / r["tokens_per_s"] for r in self.train if r.get("tokens_per_s")]
        return median(per_step)

    def telemetry(self, key: str) -> float | None:
        """Median of a logged training field, None where the run never logged it."""
        values = [r[key] for r in self.train if r.get(key) is not None]
        return median(values) if values else None


def read_runs(folder: Path, study: Study) -> tuple[list[RunResult], list[str]]:
    """Completed runs of this study under ``folder``; notes on what was left out and why."""
    runs, notes = [], []
    for run_dir in sorted(p for p in Path(folder).iterdir() if (p / "study.json").is_file()):
        ident = json.loads((run_dir / "study.json").read_text())
        if ident["study"] != study.name:
            raise ValueError(f"{run_dir} belongs to study {ident['study']!r}, not {study.name!r}; keep studies in separate folders")
        settings = yaml.safe_load((run_dir / "settings.yaml").read_text())
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        max_steps = settings["train"]["max_steps"]
        curve = [headline(r) for r in records if r["split"] == "val"]
        if not curve or curve[-1]["step"] != max_steps:
            notes.append(f"{run_dir.name}: not finished (no validation at step {max_steps}); left out")
            continue
        evals = {name: headline(json.loads((run_dir / f"eval-{name}" / "metrics.json").read_text()))
                 for name in study.evaluations if (run_dir / f"eval-{name}" / "metrics.json").is_file()}
        env = json.loads((run_dir / "environment.json").read_text())
        train = [r for r in records if r["split"] == "train"]
        run = RunResult(run_dir.name, ident["variation"], ident["model"], int(ident["seed"]), env["num_parameters"],
                        train[-1]["tokens"], max_steps, curve, train, evals)
        source = evals.get("test") or curve[-1]
        run.test = {"nll": source["loss_log"], "brier": source["loss_brier"], "ece_10": source["ece_10"],
                    "accuracy": source["accuracy"], "auc": curve_area([r["step"] for r in curve], [r["loss_log"] for r in curve])}
        runs.append(run)
    if not runs:
        raise FileNotFoundError(f"no finished runs of study {study.name!r} under {folder}")
    return runs, notes


CLASS_HEADLINE = {"loss_log": "class_nll", "loss_brier": "class_brier", "ece_10": "class_ece_10",
                  "accuracy": "class_accuracy", "reliability_10": "class_reliability_10"}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scores a report compares under their usual names: for a classifier, the class-level ones (NLL of
    the gold class, multi-class Brier, top-label ECE, accuracy) rather than the label token's over the whole
    vocabulary (kept under ``token_*``)."""
    if "class_nll" not in metrics:
        return metrics
    out = dict(metrics)
    for usual, cls in CLASS_HEADLINE.items():
        if usual in metrics:
            out[f"token_{usual}"] = metrics[usual]
        if cls in metrics:
            out[usual] = metrics[cls]
    return out


def _by(runs: list[RunResult]) -> dict[tuple[str, str], dict[int, RunResult]]:
    table: dict[tuple[str, str], dict[int, RunResult]] = defaultdict(dict)
    for r in runs:
        table[(r.variation, r.model)][r.seed] = r
    return table


def _paired(cells, a: str, b: str, model: str, value) -> tuple[list[float], list[float]]:
    seeds = sorted(set(cells.get((a, model), {})) & set(cells.get((b, model), {})))
    return ([value(cells[(a, model)][s]) for s in seeds], [value(cells[(b, model)][s]) for s in seeds])


def _targets(study: Study, cells, models: list[str]) -> dict[str, float]:
    """Time-to-target level per model: the study's value, or the worst final value of any run of that
    size, so that every run reaches it and the steps taken are comparable."""
    metric, value = study.target.get("metric", "loss_log"), study.target.get("value")
    out = {}
    for m in models:
        finals = [r.curve[-1][metric] for (v, mm), seeds in cells.items() if mm == m for r in seeds.values()]
        out[m] = float(value) if value is not None else float(max(finals))
    return out


def _ttt(run: RunResult, metric: str, target: float) -> tuple[float, float] | None:
    return time_to_target([r["step"] for r in run.curve], [r["elapsed_s"] for r in run.curve],
                          [r[metric] for r in run.curve], target)


def analyse(study: Study, runs: list[RunResult]) -> dict[str, Any]:
    cells = _by(runs)
    models = [m for m in study.models if any(k[1] == m for k in cells)]
    variations = [v for v in study.variations if any(k[0] == v for k in cells)]
    base = study.baselines
    method, log_v, bounded = base["method"], base["log"], base["bounded"]
    targets = _targets(study, cells, models)
    metric = study.target.get("metric", "loss_log")
    notes: list[str] = []
    for m in models:
        for role, v in (("method", method), ("log-loss baseline", log_v), ("bounded baseline", bounded)):
            if (v, m) not in cells:
                notes.append(f"{m}: the {role} {v!r} has no finished runs, so comparisons with it are not made")

    summary = []
    for m in models:
        for v in variations:
            seeds = cells.get((v, m), {})
            if not seeds:
                continue
            row = {"model": m, "variation": v, "seeds": len(seeds), "params": next(iter(seeds.values())).params}
            for key in ("nll", "brier", "ece_10", "accuracy", "auc"):
                row[key] = mean_std([r.test[key] for r in seeds.values()])
            row["step_time"] = mean_std([r.step_time for r in seeds.values()])
            for key, _ in EFFICIENCY:
                logged = [v for v in (r.telemetry(key) for r in seeds.values()) if v is not None]
                row[f"eff:{key}"] = mean_std(logged) if logged else None
            reached = [_ttt(r, metric, targets[m]) for r in seeds.values()]
            row["ttt_steps"] = mean_std([t[0] for t in reached]) if all(reached) else None
            row["ttt_seconds"] = mean_std([t[1] for t in reached]) if all(reached) else None
            for name in study.robustness:
                vals = [r.evals[name] for r in seeds.values() if name in r.evals]
                if vals:
                    row[f"{name}:nll"] = mean_std([x["loss_log"] for x in vals])
                    row[f"{name}:ece_10"] = mean_std([x["ece_10"] for x in vals])
                    row[f"{name}:accuracy"] = mean_std([x["accuracy"] for x in vals])
                drops = [(r.test["accuracy"] - r.evals[name]["accuracy"]) / r.test["accuracy"]
                         for r in seeds.values() if name in r.evals and r.test["accuracy"]]
                if drops:
                    row[f"{name}:drop"] = mean_std(drops)
            summary.append(row)

    comparisons = []
    for m in models:
        for other in dict.fromkeys((log_v, bounded)):  # once each, also when they are one variation
            if other == method:
                continue
            for key, label in COMPARED:
                a, b = _paired(cells, method, other, m, lambda r, k=key: r.test[k])
                comp = {"model": m, "vs": other, "metric": label, "n": len(a)}
                try:
                    comp["diff"] = float(np.mean(np.subtract(a, b)))
                    comp["t"], comp["p"] = paired_t_test(a, b)
                    comp["ci"] = bootstrap_ci(a, b)
                except NotEnoughData as err:
                    notes.append(f"{method} vs {other}, {m}, {label}: not compared ({err})")
                    continue
                comparisons.append(comp)

    criteria = _criteria(study, cells, models, targets, notes)
    scaling = _scaling(runs, variations, notes)
    sweep = _sweep(study, cells, models, notes)
    return {"summary": summary, "comparisons": comparisons, "criteria": criteria, "scaling": scaling, "sweep": sweep,
            "targets": targets, "notes": notes, "models": models, "variations": variations,
            "seeds": sorted({r.seed for r in runs}), "runs": len(runs)}


def _criteria(study: Study, cells, models, targets, notes) -> list[dict[str, Any]]:
    base = study.baselines
    method, log_v, bounded = base["method"], base["log"], base["bounded"]
    metric = study.target.get("metric", "loss_log")
    out = []

    ratios = []
    for m in models:
        a, b = _paired(cells, method, log_v, m, lambda r: r.step_time)
        ratios += [x / y for x, y in zip(a, b, strict=True)]
    if not ratios:
        notes.append("C1: no paired method/log-loss runs")
    else:
        value = float(np.mean(ratios))
        out.append({"id": "C1", "text": "step-time overhead vs log-loss ≤ 3 %",
                    "value": f"{_more_or_less((value - 1) * 100, '.1f', '% slower', '% faster')} per step than log-loss "
                             f"(mean of {len(ratios)} paired runs' median step times)",
                    "pass": value <= 1.03})

    c2, c3, detail2, detail3 = [], [], [], []
    for m in models:
        a, b = _paired(cells, method, log_v, m, lambda r: r.test["nll"])
        if len(a) < 2:
            notes.append(f"C2/C3 for {m}: fewer than 2 paired seeds")
            continue
        sigma = float(np.std(b, ddof=1))
        diff = float(np.mean(b) - np.mean(a))  # > 0: the method has lower NLL
        better = diff >= 0.3 * sigma
        matched = abs(diff) < 0.3 * sigma
        ta = [_ttt(r, metric, targets[m]) for r in cells[(method, m)].values()]
        tb = [_ttt(r, metric, targets[m]) for r in cells[(log_v, m)].values()]
        faster = all(ta) and all(tb) and np.mean([t[0] for t in ta]) <= 0.75 * np.mean([t[0] for t in tb])
        c2.append(better or (matched and faster))
        steps_a = f"{np.mean([t[0] for t in ta]):.0f}" if all(ta) else "never"
        steps_b = f"{np.mean([t[0] for t in tb]):.0f}" if all(tb) else "never"
        detail2.append(f"{m}: NLL {_more_or_less(-diff, '.4f')} than log-loss (σ_log {sigma:.4f}), steps to target "
                       f"{steps_a} vs {steps_b}")
        t_stat, p = paired_t_test(a, b)
        nll_ok = not (p < 0.05 and t_stat > 0)
        gains = {}
        for key in ("ece_10", "brier"):
            x, y = _paired(cells, method, log_v, m, lambda r, k=key: r.test[k])
            gains[key] = (np.mean(y) - np.mean(x)) / np.mean(y)
        c3.append(nll_ok and max(gains.values()) >= 0.10)
        detail3.append(f"{m}: {_more_or_less(gains['ece_10'] * 100, '.1f', '% lower', '% higher')} ECE, "
                       f"{_more_or_less(gains['brier'] * 100, '.1f', '% lower', '% higher')} Brier than log-loss; "
                       f"NLL {'not ' if nll_ok else ''}significantly worse (p={p:.3f})")
    if c2:
        out.append({"id": "C2", "text": "task metric ≥ 0.3σ better than log-loss, or matched with ≥ 25 % faster time-to-target",
                     "value": "; ".join(detail2), "pass": all(c2)})
        out.append({"id": "C3", "text": "≥ 10 % lower ECE or token Brier than log-loss, task metric no worse",
                     "value": "; ".join(detail3), "pass": all(c3)})

    degraded, detail4 = [], []
    for name in study.robustness:
        for m in models:
            for key in ("loss_log", "ece_10"):
                a, b = _paired(cells, method, bounded, m, lambda r, k=key, n=name: r.evals[n][k] if n in r.evals else np.nan)
                if len(a) < 2 or np.isnan(a + b).any():
                    notes.append(f"C4 {name} {m} {key}: not enough paired evaluations")
                    continue
                t_stat, p = paired_t_test(a, b)
                worse = p < 0.05 and t_stat > 0
                degraded.append(worse)
                shown = {"loss_log": "NLL", "ece_10": "ECE"}[key]
                detail4.append(f"{name} {m} {shown}: {_more_or_less(float(np.mean(a) - np.mean(b)), '.4f')} than "
                               f"{bounded} (p={p:.3f})")
    if degraded:
        out.append({"id": "C4", "text": f"no significant degradation vs {bounded} on robustness sets",
                    "value": "; ".join(detail4), "pass": not any(degraded)})

    wins = total = 0
    for m in models:
        for other in {log_v, bounded} - {method}:
            for key in ("nll", "brier", "ece_10"):
                a, b = _paired(cells, method, other, m, lambda r, k=key: r.test[k])
                for x, y in zip(a, b, strict=True):
                    total += 1
                    wins += x <= y * 1.01
            for name in study.robustness:
                a, b = _paired(cells, method, other, m, lambda r, n=name: r.evals.get(n, {}).get("loss_log", np.nan))
                for x, y in zip(a, b, strict=True):
                    if not (np.isnan(x) or np.isnan(y)):
                        total += 1
                        wins += x <= y * 1.01
    if total:
        p = sign_test(wins, total)
        out.append({"id": "C5", "text": "positive or neutral in ≥ 80 % of paired comparisons, binomial p < 0.05",
                    "value": f"{wins}/{total} = {wins / total * 100:.0f} %, p = {p:.2g}",
                    "pass": wins / total >= 0.8 and p < 0.05})
    return out


def _sweep(study: Study, cells, models: list[str], notes: list[str]) -> list[dict[str, Any]]:
    """Per model and grid cell: the sweep metric over seeds, and its paired difference from the reference
    (the default schedule) with the paired t-test's p (seeds matched); empty without a sweep."""
    if not study.grid_cells:
        return []
    reference, metric = study.sweep["variation"], study.sweep["metric"]
    rows = []
    for m in models:
        for variation, values in study.grid_cells.items():
            seeds = cells.get((variation, m), {})
            if not seeds:
                notes.append(f"sweep {m} {variation}: no finished runs")
                continue
            row = {"model": m, "variation": variation, "values": values, "reference": variation == reference,
                   "metric": metric, "value": mean_std([r.test[metric] for r in seeds.values()]),
                   "diff": None, "p": None, "significant": False}
            if variation != reference:
                a, b = _paired(cells, variation, reference, m, lambda r: r.test[metric])
                try:
                    row["t"], row["p"] = paired_t_test(a, b)
                    row["diff"] = float(np.mean(np.subtract(a, b)))
                    row["significant"] = row["p"] < 0.05
                except NotEnoughData as err:
                    notes.append(f"sweep {m} {variation} vs {reference}: not tested ({err})")
            rows.append(row)
    return rows


def _more_or_less(amount: float, fmt: str, up: str = "higher", down: str = "lower") -> str:
    """'0.1412 higher' / '19.1 lower': a measured change with its direction in words, never a bare sign."""
    if amount == 0:
        return f"{0:{fmt}} (no change)"
    return f"{abs(amount):{fmt}} {up if amount > 0 else down}"


def _scaling(runs: list[RunResult], variations: list[str], notes: list[str]) -> dict[str, Any]:
    """Power laws per variation and score, in parameters and in compute: each identified or not, and why."""
    fits: dict[str, Any] = {}
    for v in variations:
        rs = [r for r in runs if r.variation == v]
        for key in ("nll", "brier"):
            for axis, x in (("params", [r.params for r in rs]), ("compute", [6.0 * r.params * r.tokens for r in rs])):
                fit = identified_power_law(x, [r.test[key] for r in rs])
                fits[f"{v}:{key}:{axis}"] = fit
                if not fit["identified"]:
                    notes.append(f"scaling fit {v} {key} vs {axis}: not identified ({fit['reason']})")
    return fits


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


def _sweep_section(study: Study, rows: list[dict[str, Any]]) -> list[str]:
    reference, metric = study.sweep["variation"], study.sweep["metric"]
    axes = list(study.grid_cells[reference])
    label = dict(COMPARED).get(metric, f"test {metric}")
    lines = ["", f"## Sensitivity: {' × '.join(axes)} ({label}, mean ± std over seeds)", "",
             f"Each cell against the reference `{reference}` ("
             + ", ".join(f"{k} = {grid_value(v)}" for k, v in study.grid_cells[reference].items())
             + ") over the same seeds: paired t-test, * where p < 0.05. Heat-maps: `sweep_heatmaps.png`.", "",
             "| model | " + " | ".join(axes) + f" | {label} | vs reference | p | |", "|---|" + "---|" * len(axes) + "---|---|---|---|"]
    for r in rows:
        diff = "reference" if r["reference"] else (_more_or_less(r["diff"], ".4g") if r["diff"] is not None else "—")
        p = f"{r['p']:.3g}" if r["p"] is not None else "—"
        lines.append(f"| {r['model']} | " + " | ".join(grid_value(r["values"][a]) for a in axes)
                     + f" | {_fmt(r['value'])} | {diff} | {p} | {'*' if r['significant'] else ''} |")
    return lines


def write_report(study: Study, folder: Path, out: Path, *, note: str = "") -> Path:
    """Analyse the study folder and write report.md with its figures into ``out``."""
    from hypros_lm.plots import lambda_and_grad_norms
    from hypros_lm.studies import figures

    runs, skipped = read_runs(folder, study)
    res = analyse(study, runs)
    out.mkdir(parents=True, exist_ok=True)
    models, variations = res["models"], res["variations"]
    figs = [figures.learning_curves(runs, models, variations, out, x="step"),
            figures.learning_curves(runs, models, variations, out, x="elapsed_s")]
    if any("test" in r.evals for r in runs):
        figs.append(figures.calibration(runs, models, variations, out))
    sets = [s for s in study.evaluations if any(s in r.evals for r in runs)]
    if sets:
        figs.append(figures.robustness(runs, models, variations, sets, out))
    figs.append(figures.scaling(runs, variations, res["scaling"], out))
    if res["sweep"]:
        figs.append(figures.sweep_heatmaps(res["sweep"], study, models, out))
    largest = [folder / r.name for r in runs if r.model == models[-1] and r.seed == res["seeds"][0]]
    figs.append(lambda_and_grad_norms(largest, out))

    lines = [f"# Study `{study.name}`", "", study.description, "",
             f"{res['runs']} finished runs: variations {', '.join(variations)}; model sizes {', '.join(models)}; "
             f"**{len(res['seeds'])} seeds** ({', '.join(map(str, res['seeds']))}). Method `{study.baselines['method']}`, "
             f"log-loss baseline `{study.baselines['log']}`, bounded baseline `{study.baselines['bounded']}`.", ""]
    if note:
        lines += [note, ""]
    lines += ["## Criteria", "", "| | criterion | measured | verdict |", "|---|---|---|---|"]
    for c in res["criteria"]:
        lines.append(f"| {c['id']} | {c['text']} | {c['value']} | **{'PASS' if c['pass'] else 'FAIL'}** |")
    missing = {"C1", "C2", "C3", "C4", "C5"} - {c["id"] for c in res["criteria"]}
    for cid in sorted(missing):
        lines.append(f"| {cid} | — | could not be evaluated (see notes) | **NOT EVALUATED** |")
    lines += ["", "## Results (mean ± std over seeds)", "",
              "| model | params | variation | test NLL | test Brier | test ECE | accuracy | val NLL area | steps to target | s/step |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["summary"]:
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['variation']} | {_fmt(r['nll'])} | {_fmt(r['brier'])} | "
                     f"{_fmt(r['ece_10'])} | {_fmt(r['accuracy'])} | {_fmt(r['auc'])} | {_fmt(r['ttt_steps'])} | "
                     f"{_fmt(r['step_time'])} |")
    interval = median([b["step"] - a["step"] for r in runs for a, b in zip(r.curve, r.curve[1:], strict=False)] or [0])
    lines += ["", f"Time-to-target: the step at which validation {study.target.get('metric', 'loss_log')} first reaches "
              + ", ".join(f"{m}: {t:.4f}" for m, t in res["targets"].items())
              + f", interpolated linearly between evaluations (every {interval:g} steps)."]
    lines += ["", "## Efficiency (mean over seeds of each run's median over logged steps; — where not logged)", "",
              "| model | variation | s/step | " + " | ".join(label for _, label in EFFICIENCY) + " |",
              "|---|---|---|" + "---|" * len(EFFICIENCY)]
    for r in res["summary"]:
        lines.append(f"| {r['model']} | {r['variation']} | {_fmt(r['step_time'])} | "
                     + " | ".join(_fmt(r[f"eff:{k}"]) if r[f"eff:{k}"] else "—" for k, _ in EFFICIENCY) + " |")
    if study.robustness:
        lines += ["", "## Robustness (perturbations and domain shift)", "",
                  "Relative degradation: (test accuracy − accuracy on the set) / test accuracy, per run, then mean ± std.",
                  "", "| model | variation | set | NLL | ECE | accuracy | rel. degradation |", "|---|---|---|---|---|---|---|"]
        for r in res["summary"]:
            for s in study.robustness:
                lines.append(f"| {r['model']} | {r['variation']} | {s} | {_fmt(r.get(f'{s}:nll'))} | "
                             f"{_fmt(r.get(f'{s}:ece_10'))} | {_fmt(r.get(f'{s}:accuracy'))} | {_pct(r.get(f'{s}:drop'))} |")
    lines += ["", "## Paired comparisons of the method", "",
              "| model | vs | metric | n | mean difference | 95 % bootstrap CI | paired t | p |", "|---|---|---|---|---|---|---|---|"]
    for c in res["comparisons"]:
        lines.append(f"| {c['model']} | {c['vs']} | {c['metric']} | {c['n']} | {c['diff']:+.4g} | "
                     f"[{c['ci'][0]:+.3g}, {c['ci'][1]:+.3g}] | {c['t']:.3g} | {c['p']:.3g} |")
    if res["sweep"]:
        lines += _sweep_section(study, res["sweep"])
    lines += ["", "## Scaling fits L = E + A·x^(−α)", "",
              "| variation | score | x | E | A | α | dof |", "|---|---|---|---|---|---|---|"]
    for key, f in res["scaling"].items():
        v, score, axis = key.split(":")
        if not f["identified"]:
            lines.append(f"| {v} | {score} | {axis} | not identified: {f['reason']} | | | |")
            continue
        lines.append(f"| {v} | {score} | {axis} | {f['E']:.4g} ± {f['E_err']:.2g} | {f['A']:.4g} ± {f['A_err']:.2g} | "
                     f"{f['alpha']:.3g} ± {f['alpha_err']:.2g} | {f['dof']} |")
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figs]
    if res["notes"] or skipped:
        lines += ["", "## Comparisons not made", ""] + [f"- {n}" for n in skipped + res["notes"]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "analysis.json").write_text(json.dumps(res, indent=2, default=str))
    return path
