"""A scaling study's budgets grow with the model (D = k·N, warm-up and validations a fraction of each run, the learning
rate by the stated rule), and a cut scaling study resumes from its finished runs; its report states the budgets,
the learning rate per size, the study's wall-clock and why a law with too few sizes is not identified."""

from __future__ import annotations

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
    assert {r.variation for r in runs} == {"log", "brier", "hypros"} and len(study.models) >= 6
    sizes = {}
    for r in runs:
        s = r.settings
        total, non_embedding = count_parameters(s.model, s.data.vocab_size)
        per_step = s.train.micro_batch_size * s.data.seq_len
        assert (s.train.max_steps - 1) * per_step < sc.tokens_per_parameter * total <= s.train.max_steps * per_step
        assert s.optim.warmup_steps == max(sc.warmup_min_steps, round(sc.warmup_fraction * s.train.max_steps))
        rule = sc.rule(r.variation)
        assert s.optim.lr == pytest.approx(rule.value * (total / rule.reference) ** -rule.exponent, rel=1e-2)
        assert s.optim.beta2 == 0.99 and s.train.eval_every == s.train.max_steps // sc.evaluations
        sizes[r.model] = total
        assert non_embedding < total
    ordered = [sizes[m] for m in study.models]
    assert all(1.7 < b / a < 3.0 for a, b in zip(ordered, ordered[1:], strict=False))  # about ×2 a size
    assert math.log10(ordered[-1] / ordered[0]) >= 1.5
    seeds = {m: len({r.seed for r in runs if r.model == m}) for m in study.models}
    assert all(seeds[m] >= 3 for m in study.models)  # a paired test at every size
    epochs = max(r.settings.train.max_steps for r in runs) * 8 * 128 / 4.4e6  # WikiText-2 train in this BPE: ~4.4M tokens
    assert epochs <= 4


@pytest.fixture(scope="module")
def mini_study(tmp_path_factory, cache_dir):
    """Two sizes of the w-family, log-loss, one seed, D = 1·N: first cut (the smaller size alone), then whole."""
    root = tmp_path_factory.mktemp("scaling")
    spec = yaml.safe_load((REPO / "studies" / "scaling-cpu.yaml").read_text())
    spec.update(name="scaling-mini", models=["w8", "w16"], seeds=[1], variations={"log": {"loss": {"name": "log"}}},
                baselines={"log": "log", "bounded": "log", "method": "log"}, eval_batches=2)
    spec["scaling"].update(tokens_per_parameter=1, evaluations=2, seeds={})
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


def test_the_cpu_study_s_learning_rate_rule_is_its_sweep_s_with_every_optimum_inside():
    import json

    sweep = json.loads((REPO / "docs" / "studies" / "scaling-cpu-lr" / "analysis.json").read_text())["scaling"]["lr_sweep"]
    assert len(sweep["sizes"]) == 4 and all(r["inside"] and len(r["lrs"]) == 5 for r in sweep["sizes"])
    rule = load_study("scaling-cpu").scaling.lr
    assert {"reference": rule.reference, "value": rule.value, "exponent": rule.exponent} == sweep["rule"]
