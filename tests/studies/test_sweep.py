"""Sweeps in study files: grid expansion into named variations, and the report's sensitivity analysis."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from scipy import stats

from hypros_lm.runs import EVALUATION_FILE, RunFolder
from hypros_lm.studies.analysis import analyse
from hypros_lm.studies.report import write_report
from hypros_lm.studies.results import RunResult
from hypros_lm.studies.spec import expand, load_study
from tests.studies.test_runner import STUDY

SWEEP = {"variation": "hypros", "grid": {"loss.tau": [0.05, 0.1, 0.2], "loss.lam_max": [0.7, 1.0]}, "metric": "ece_10"}


def _study(tmp_path, sweep=SWEEP, **extra):
    spec = copy.deepcopy(dict(STUDY, sweep=sweep, **extra))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))  # the grid keeps its order
    return path


def test_grid_expands_to_named_variations_with_their_settings(tmp_path):
    study = load_study(_study(tmp_path))
    # 3 × 2 points; (0.1, 1.0) is the reference's own schedule, so it is `hypros` itself, not a copy
    grid = [v for v in study.variations if v.startswith("hypros-")]
    assert grid == ["hypros-tau0.05-lam_max0.7", "hypros-tau0.05-lam_max1", "hypros-tau0.1-lam_max0.7",
                    "hypros-tau0.2-lam_max0.7", "hypros-tau0.2-lam_max1"]
    assert study.grid_cells["hypros"] == {"loss.tau": 0.1, "loss.lam_max": 1.0}
    runs = {r.variation: r.settings for r in expand(study, tmp_path / "runs")}
    assert set(runs) == {"log", "hypros", *grid}
    for name in grid:
        loss = runs[name].loss
        assert loss.name == "hypros"  # the varied variation's own settings are kept
        assert (loss.tau, loss.lam_max) == (study.grid_cells[name]["loss.tau"], study.grid_cells[name]["loss.lam_max"])
    assert (runs["hypros"].loss.tau, runs["hypros"].loss.lam_max) == (0.1, 1.0)


def test_one_axis_and_an_off_grid_reference(tmp_path):
    study = load_study(_study(tmp_path, sweep={"variation": "hypros", "grid": {"loss.t0": [0.2, 0.4]}}))
    assert [v for v in study.variations if v.startswith("hypros-")] == ["hypros-t00.2", "hypros-t00.4"]
    assert study.sweep.metric == "ece_10"  # the default
    assert study.grid_cells["hypros"] == {"loss.t0": 0.3}


@pytest.mark.parametrize(("sweep", "message"), [
    ({"variation": "nope", "grid": {"loss.tau": [0.1]}}, r"sweep.variation='nope' is not a variation"),
    ({"variation": "hypros", "grid": {"tau": [0.1]}}, r"key 'tau' must be section.key"),
    ({"variation": "hypros", "grid": {"loss.taus": [0.1]}}, r"loss.taus, which is not a run setting"),
    ({"variation": "hypros", "grid": {"loss.tau": [-0.1]}}, r"loss.tau=-0.1 must be > 0"),
    ({"variation": "hypros", "grid": {"loss.tau": []}}, r"non-empty list of distinct values"),
    ({"variation": "hypros", "grid": {"loss.tau": [0.1]}, "metric": "perplexity"}, r"sweep.metric='perplexity'; choose one of"),
    ({"variation": "hypros", "grid": {"loss.tau": [0.1], "loss.t0": [0.2], "loss.lam_max": [1.0]}}, "one or two settings"),
])
def test_bad_sweeps_are_named(tmp_path, sweep, message):
    with pytest.raises(ValueError, match=message):
        load_study(_study(tmp_path, sweep=sweep))


def _result(variation: str, seed: int, ece: float) -> RunResult:
    curve = [{"step": s, "tokens": 256 * s, "elapsed_s": s / 10, "loss_log": 6.0 - s / 100 - ece, "loss_brier": 0.9,
              "ece_10": ece} for s in (2, 4)]
    train = [{"step": 4, "tokens": 1024, "tokens_per_s": 100.0, "flops_per_token": 6000}]
    run = RunResult(f"{variation}-nano-s{seed}", variation, "nano", seed, 1000, 1024, 4, curve, train, {})
    run.test = {"nll": curve[-1]["loss_log"], "brier": 0.9, "ece_10": ece, "accuracy": 0.1, "auc": 5.0}
    return run


def test_sensitivity_cells_against_the_reference(tmp_path):
    """Cell means, paired differences, t intervals, p-values against scipy and Holm's adjusted p (by hand) on values
    set by hand; the report writes the table and the heat-map."""
    study = load_study(_study(tmp_path, sweep={"variation": "hypros", "grid": {"loss.tau": [0.05, 0.2]}},
                              seeds=[1, 2, 3]))
    ece = {"hypros": [0.050, 0.052, 0.049], "hypros-tau0.05": [0.030, 0.031, 0.029], "hypros-tau0.2": [0.051, 0.049, 0.053],
           "log": [0.06, 0.061, 0.062]}
    runs = [_result(v, s + 1, x) for v, xs in ece.items() for s, x in enumerate(xs)]
    rows = {r["variation"]: r for r in analyse(study, runs)["sweep"]}
    assert set(rows) == {"hypros", "hypros-tau0.05", "hypros-tau0.2"}
    assert rows["hypros"]["reference"] and rows["hypros"]["p"] is None
    p = {}
    for name in ("hypros-tau0.05", "hypros-tau0.2"):
        test = stats.ttest_rel(ece[name], ece["hypros"])
        d = np.subtract(ece[name], ece["hypros"])
        half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
        assert rows[name]["p"] == pytest.approx(test.pvalue) and rows[name]["n"] == 3
        assert rows[name]["diff"] == pytest.approx(d.mean())
        assert (rows[name]["low"], rows[name]["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
        assert rows[name]["value"][0] == pytest.approx(np.mean(ece[name]))
        p[name] = test.pvalue
    small, large = sorted(p, key=p.get)  # Holm over the two cells: 2·p₍₁₎, then max(that, p₍₂₎)
    assert rows[small]["p_adjusted"] == pytest.approx(2 * p[small])
    assert rows[large]["p_adjusted"] == pytest.approx(max(2 * p[small], p[large]))
    assert rows["hypros-tau0.05"]["significant"] and not rows["hypros-tau0.2"]["significant"]

    folder = tmp_path / "runs"
    report = _written_report(study, runs, folder, tmp_path / "report")
    assert "## Sensitivity: loss.tau (test ECE (10 bins), mean ± std over n seeds)" in report
    assert "| nano | 0.05 | 3 | 0.03 ± 0.001 | 0.02033 lower | [-0.0218, -0.0189] | 0.000269 | 0.000537 | * |" in report
    assert "| nano | 0.2 | 3 | 0.051 ± 0.002 | 0.0006667 higher | [-0.00806, +0.00939] | 0.774 | 0.774 |  |" in report
    assert "| nano | 0.1 | 3 | 0.05033 ± 0.0015 | reference | — | — | — |  |" in report
    assert (tmp_path / "report" / "sweep_heatmaps.png").stat().st_size > 5000


def test_a_report_leaves_out_runs_only_planned(tmp_path):
    """A folder that --print-commands (or a runner still at work) left, with no training yet, is named and left
    out; the report is made of the finished runs."""
    from hypros_lm.studies.runner import write_run_config

    study = load_study(_study(tmp_path, sweep={"variation": "hypros", "grid": {"loss.tau": [0.05, 0.2]}}, seeds=[1, 2, 3]))
    folder = tmp_path / "runs"
    runs = [_result(v, s, 0.05 + s / 100) for v in ("log", "hypros", "hypros-tau0.05", "hypros-tau0.2") for s in (1, 2, 3)]
    planned = next(r for r in runs if r.name == "hypros-tau0.2-nano-s2")
    write_run_config(study, next(s for s in expand(study, folder) if s.name == planned.name))
    report = _written_report(study, [r for r in runs if r is not planned], folder, tmp_path / "report")
    assert "- hypros-tau0.2-nano-s2: not started; left out" in report
    assert "11 finished runs" in report and "seeds per cell: nano 2/3" in report


def test_scaling_fits_only_where_the_study_has_sizes_to_fit(tmp_path):
    """One model size: one note and no fits; two sizes: a law per variation and metric (not identified, with its
    reason)."""
    study = load_study(_study(tmp_path, seeds=[1, 2, 3]))
    runs = [_result(v, s, 0.05) for v in ("log", "hypros") for s in (1, 2, 3)]
    res = analyse(study, runs)
    assert res["scaling"] == {}
    assert "scaling fits: not made (one model size)" in res["notes"]
    for r in runs[::2]:
        r.params = 4000
    res = analyse(study, runs)
    laws = {(law["variation"], law["metric"]): law for law in res["scaling"]["laws"]}
    assert len(laws) == 2 * 3 and not any(f["identified"] for f in laws.values())
    assert laws[("log", "nll")]["reason"] == "2 sizes; a law with intervals needs at least 5"
    assert "scaling law log nll vs parameters: not identified (2 sizes; a law with intervals needs at least 5)" in res["notes"]


def _written_report(study, runs, folder, out) -> str:
    """write_report reads run folders: write each result as the files a run leaves."""
    import json

    for r in runs:
        d = folder / r.name
        d.mkdir(parents=True)
        (d / "study.json").write_text(json.dumps({"study": study.name, "task": "pretrain", "variation": r.variation,
                                                  "model": r.model, "seed": r.seed}))
        run = RunFolder(d)
        run.settings_file.write_text(yaml.safe_dump({"train": {"max_steps": r.max_steps, "seed": r.seed},
                                                       "loss": {"name": r.variation}, "model": {"name": r.model}}))
        run.environment_file.write_text(json.dumps({"num_parameters": r.params}))
        records = [{**x, "split": "train"} for x in r.train] + [{**x, "split": "val"} for x in r.curve]
        run.metrics_file.write_text("\n".join(json.dumps(x) for x in records) + "\n")
        ev = run.evaluation("test")
        ev.mkdir()
        (ev / EVALUATION_FILE).write_text(json.dumps({"loss_log": r.test["nll"], "loss_brier": r.test["brier"],
                                                     "ece_10": r.test["ece_10"], "accuracy": r.test["accuracy"],
                                                     "reliability_10": []}))
    return write_report(study, folder, out).read_text()
