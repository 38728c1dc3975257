"""The CPU scaling study's committed report: every law it prints is a refit of the runs in its analysis.json (the same
fit and the same bootstrap draws), and the study is what issue #48 asked for (≥ 7 sizes up to ≥ 480k parameters, three
objectives × three seeds at every size, each objective at its own learning rate). A cut study's report (fewer runs
than its file plans) skips both until the study is whole."""

from __future__ import annotations

import json
import math
import re

import pytest

from hypros_lm.studies.scaling import Points, identified_law
from hypros_lm.studies.spec import expand, load_study
from tests.docs.reports import report_text, schema
from tests.helpers import REPO

STUDY = "scaling-cpu"


def _awaiting() -> str | None:
    """Why the committed report is not yet the re-run's whole study (None: it is)."""
    if schema(STUDY) < 2:
        return (f"{STUDY}'s report predates the fits that resample sizes (analysis schema 1); its re-run with each "
                "objective's own learning rate is pending (issue 48)")
    analysis = json.loads((REPO / "docs" / "studies" / STUDY / "analysis.json").read_text(encoding="utf-8"))
    planned = len(expand(load_study(STUDY), REPO / "runs" / "studies" / STUDY))
    done = len(analysis["scaling"]["runs"])
    return None if done == planned else f"{STUDY}'s report is of a cut study ({done} of {planned} runs; issue 48)"


_WHY_AWAITING = _awaiting()
AWAITING_RERUN = pytest.mark.skipif(_WHY_AWAITING is not None, reason=_WHY_AWAITING or "")


def _laws() -> dict[str, dict[str, str]]:
    """The report's test-NLL laws by objective: the table of the "Scaling laws" section headed objective | metric."""
    lines = report_text(STUDY).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| objective | metric |"))
    header = [c.strip() for c in lines[start].strip()[1:-1].split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, [c.strip() for c in line.strip()[1:-1].split("|")], strict=True)))
    return {r["objective"]: r for r in rows if r["metric"] == "nll"}


@pytest.fixture(scope="module")
def analysis() -> dict:
    return json.loads((REPO / "docs" / "studies" / STUDY / "analysis.json").read_text(encoding="utf-8"))


@AWAITING_RERUN
def test_the_study_is_the_one_asked_for(analysis):
    """Issue 48's design: ≥ 7 sizes up to ≥ 480k parameters over ≥ 1.5 decades, three objectives × three seeds at
    every size, each at its own learning rate, warm-up ≥ 20 steps."""
    runs = analysis["scaling"]["runs"]
    sizes = sorted({r["params"] for r in runs})
    assert len(sizes) >= 7 and sizes[-1] >= 480_000 and math.log10(sizes[-1] / sizes[0]) >= 1.5
    assert sorted(analysis["variations"]) == ["brier", "hypros", "log"]
    for variation in analysis["variations"]:
        for size in sizes:
            assert sum(r["variation"] == variation and r["params"] == size for r in runs) >= 3
    rates = {(r["variation"], r["params"]): r["lr"] for r in runs}
    assert rates[("brier", sizes[-1])] != rates[("log", sizes[-1])]  # not log-loss's rate for all
    assert re.search(r"took \*\*(\d+) minutes\*\*", report_text(STUDY))


def test_objectives_at_their_own_rates_are_not_read_as_a_learning_rate_sweep(analysis):
    """Each objective trains at its own rule, so the rates at a size differ between objectives: their losses are no
    sweep of one objective's rate, and the report fits no rule through them (it did once, mixing the three)."""
    assert analysis["scaling"]["lr_sweep"] is None
    assert "The learning-rate sweep" not in report_text(STUDY)


@AWAITING_RERUN
def test_every_printed_law_is_a_refit_of_the_analysis(analysis):
    """The test-NLL law of each objective, refitted from the runs' sizes (those of the fit window), seeds and test NLL
    (the seeds drawn once for all objectives, in the study's order, as the report's analysis draws them), equals
    analysis.json's and the report's cells."""
    scaling, drawn = analysis["scaling"], {}
    smallest = scaling["fit_window"]["from_params"] or 0  # the laws are fitted from the study file's fit_from up
    rows = _laws()
    for variation in analysis["variations"]:
        runs = [r for r in scaling["runs"] if r["variation"] == variation and r["params"] >= smallest]
        points = Points.of([r["params"] for r in runs], [r["nll"] for r in runs], [r["seed"] for r in runs])
        saved = next(law for law in scaling["laws"] if (law["variation"], law["metric"]) == (variation, "nll"))
        refit = identified_law(points, n_boot=saved["n_boot"], seeds_drawn=drawn)
        assert refit["identified"] == saved["identified"]
        if not refit["identified"]:
            assert refit["reason"] in rows[variation]["α [95 % CI]"]
            continue
        for key in ("alpha", "E", "A"):
            assert refit[key] == pytest.approx(saved[key], rel=1e-9), (variation, key)
            assert refit[f"{key}_ci"] == pytest.approx(saved[f"{key}_ci"], rel=1e-9), (variation, key)
        alpha_cell = f"{refit['alpha']:.3g} [{refit['alpha_ci'][0]:.3g}, {refit['alpha_ci'][1]:.3g}]"
        assert rows[variation]["α [95 % CI]"] == alpha_cell
        assert rows[variation]["E [95 % CI]"] == f"{refit['E']:.4g} [{refit['E_ci'][0]:.4g}, {refit['E_ci'][1]:.4g}]"


def test_the_readme_quotes_the_reports_laws_and_verdict():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- scaling -->\n", 1)[1]
    lines = block.splitlines()
    table_lines = lines[: next(i for i, line in enumerate(lines) if not line.startswith("|"))]
    rows = [[c.strip() for c in line.strip()[1:-1].split("|")] for line in table_lines][2:]
    laws = _laws()
    assert sorted(objective for _, objective, _, _ in rows) == sorted(laws)
    for link, objective, alpha, offset in rows:
        assert link == f"[{STUDY}](docs/studies/{STUDY}/report.md)"
        assert (alpha, offset) == (laws[objective]["α [95 % CI]"], laws[objective]["E [95 % CI]"]), objective
    said = re.search(r"Verdict \(test NLL\): (.+)\.$", report_text(STUDY), re.MULTILINE).group(1)
    assert f"Verdict (test NLL): {said}." in block.split("\n\n", 2)[1]


def test_the_studies_page_quotes_each_sweep_s_optima_and_rule():
    """docs/studies.md's table of the CPU sweeps: each row's optima, rule and intervals are its report's analysis."""
    text = (REPO / "docs" / "studies.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if "](studies/scaling-cpu-lr-" in line and line.startswith("|")]
    assert len(rows) == 3
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        sweep = re.search(r"\((studies/(scaling-cpu-lr-\w+))/report\.md\)", cells[-1]).group(2)
        saved = json.loads((REPO / "docs" / "studies" / sweep / "analysis.json").read_text())["scaling"]["lr_sweep"]
        rule = saved["rule"]
        assert cells[1] == " · ".join(f"{r['optimum']:.3g}" for r in saved["sizes"]), sweep
        assert cells[2] == f"{rule['value']:.3g}·(N/{rule['reference']:g})^−{rule['exponent']:.3g}", sweep
        for cell, key in ((cells[3], "value_ci"), (cells[4], "exponent_ci")):
            assert cell == f"[{rule[key][0]:.3g}, {rule[key][1]:.3g}]".replace("-", "−"), sweep
