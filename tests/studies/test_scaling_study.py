"""A scaling study's budgets grow with the model (D = k·N, warm-up and validations a fraction of each run, the learning
rate by the stated rule), and a cut scaling study resumes from its finished runs; its report states the budgets,
the learning rate per size, the study's wall-clock and why a law with too few sizes is not identified."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from hypros_lm.models import count_parameters
from hypros_lm.runs import RunFolder
from hypros_lm.studies.report import study_minutes
from hypros_lm.studies.spec import expand, load_study
from tests.helpers import REPO, run_python

STUDY_SCRIPT = REPO / "launch" / "study.py"
REPORT_SCRIPT = REPO / "eval" / "report.py"


def test_the_cpu_study_budgets_follow_d_equals_k_n(tmp_path):
    study = load_study("scaling-cpu")
    sc = study.scaling
    runs = expand(study, tmp_path)
    assert {r.variation for r in runs} == {"log", "brier", "hypros"} and len(study.models) >= 7
    sizes, embedded = {}, {}
    for r in runs:
        s = r.settings
        total, non_embedding = count_parameters(s.model, s.data.vocab_size)
        per_step = s.train.micro_batch_size * s.data.seq_len
        assert (s.train.max_steps - 1) * per_step < sc.tokens_per_parameter * total <= s.train.max_steps * per_step
        assert s.optim.warmup_steps == max(sc.warmup_min_steps, round(sc.warmup_fraction * s.train.max_steps)) >= 20
        rule = sc.rule(r.variation)
        assert rule.sweep == f"scaling-cpu-lr-{r.variation}"  # each objective at its own rule
        assert s.optim.lr == pytest.approx(rule.value * (total / rule.reference) ** -rule.exponent, rel=1e-2)
        assert s.optim.beta2 == 0.99 and s.train.eval_every == s.train.max_steps // sc.evaluations
        sizes[r.model], embedded[r.model] = total, 1 - non_embedding / total
    ordered = [sizes[m] for m in study.models]
    assert all(1.3 < b / a < 3.0 for a, b in zip(ordered, ordered[1:], strict=False))  # about ×2 a size
    assert math.log10(ordered[-1] / ordered[0]) >= 1.5 and ordered[-1] >= 480_000
    seeds = {m: len({r.seed for r in runs if r.model == m}) for m in study.models}
    assert all(seeds[m] >= 3 for m in study.models)  # a paired test at every size
    epochs = max(r.settings.train.max_steps for r in runs) * 8 * 128 / 5_179_141  # WikiText-2's train split in this BPE
    assert epochs <= 1.3
    window = [m for m in study.models if embedded[m] < 0.5]  # the fit window's rule: embeddings under half
    assert sc.fit_from == window[0] and window == study.models[study.models.index(window[0]):]


@pytest.fixture(scope="module")
def mini_study(tmp_path_factory, cache_dir):
    """Two sizes of the w-family, log-loss, one seed, D = 1·N: first cut (the smaller size alone), then whole."""
    root = tmp_path_factory.mktemp("scaling")
    spec = yaml.safe_load((REPO / "studies" / "scaling-cpu.yaml").read_text())
    spec.update(name="scaling-mini", models=["w8", "w16"], seeds=[1], variations={"log": {"loss": {"name": "log"}}},
                baselines={"log": "log", "bounded": "log", "method": "log"}, eval_batches=2)
    spec["scaling"].update(tokens_per_parameter=1, evaluations=2, warmup_min_steps=1,
                           objective_lr={"log": spec["scaling"]["objective_lr"]["log"]}, fit_from=None)
    spec["base"]["train"]["eval_batches"] = 2
    path = root / "scaling-mini.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = root / "runs"
    run_python([str(path), "--out", str(out), "--models", "w8"], cache_dir, script=STUDY_SCRIPT, timeout=600)
    first = RunFolder(out / "log-w8-s1").metrics_file.stat().st_mtime_ns
    resumed = run_python([str(path), "--out", str(out)], cache_dir, script=STUDY_SCRIPT, timeout=600)
    return path, out, first, resumed.stdout


def test_a_cut_scaling_study_resumes_from_its_finished_runs(mini_study):
    _, out, first, stdout = mini_study
    assert "log-w8-s1: done, skipped" in stdout and "log-w16-s1: training" in stdout, stdout[-2000:]
    assert RunFolder(out / "log-w8-s1").metrics_file.stat().st_mtime_ns == first  # not trained again
    assert len((out / "wallclock.jsonl").read_text().splitlines()) == 2 and study_minutes(out) > 0


def test_the_report_states_budgets_learning_rates_wallclock_and_why_no_law(mini_study, cache_dir, tmp_path):
    path, out, _, _ = mini_study
    run_python([str(out), "--study", str(path), "--out", str(tmp_path)], cache_dir, script=REPORT_SCRIPT)
    report = (tmp_path / "report.md").read_text()
    assert f"took **{study_minutes(out):.0f} minutes** summed over runs" in report
    study = load_study(path)
    for run in expand(study, out):
        s = run.settings
        total, _ = count_parameters(s.model, s.data.vocab_size)
        assert f"| {run.model} | {total:,} |" in report and f"| {s.train.max_steps:,} | {s.optim.lr:.3g} |" in report
    assert "| log | nll | not identified: 2 sizes; a law with intervals needs at least 5 |" in report
    for figure in ("scaling.png", "compute_frontier.png", "scaling_forest.png", "calibration_by_size.png"):
        assert (tmp_path / figure).is_file() and f"]({figure})" in report


@pytest.mark.parametrize("objective", ["log", "brier", "hypros"])
def test_each_objective_s_rule_is_its_own_sweep_s_with_every_optimum_inside(objective):
    """scaling-cpu and its budget check train each objective at the rule its own sweep's report fitted: ≥ 3 sizes ×
    ≥ 4 rates × 2 seeds, every size's best rate inside the sweep, the rule with its interval."""
    rule = load_study("scaling-cpu").scaling.objective_lr[objective]
    analysis = json.loads((REPO / "docs" / "studies" / rule.sweep / "analysis.json").read_text())
    sweep = analysis["scaling"]["lr_sweep"]
    assert len(sweep["sizes"]) >= 3 and all(r["inside"] and len(r["lrs"]) >= 4 and r["seeds"] >= 2
                                            for r in sweep["sizes"])
    saved = sweep["rule"]
    assert {"reference": rule.reference, "value": rule.value, "exponent": rule.exponent} == {
        k: saved[k] for k in ("reference", "value", "exponent")}
    assert saved["value_ci"][0] <= saved["value"] <= saved["value_ci"][1]
    assert saved["exponent_ci"][0] <= saved["exponent"] <= saved["exponent_ci"][1]
    assert load_study("scaling-cpu-d40").scaling.objective_lr[objective] == rule
