"""The README's results at a glance: every cell is the study report's own (its results table, its paired comparisons,
its criteria), so the summary cannot drift from the reports it links."""

from __future__ import annotations

import re

from tests.docs.reports import paired_p, result, verdict
from tests.helpers import REPO


def _results_rows() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- results -->\n", 1)[1]
    rows = []
    for line in block.splitlines():
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert rows[0][:6] == ["study", "task", "model", "metric", "HyProS", "log-loss"]
    return rows[2:]


def test_every_cell_of_the_results_table_is_the_reports():
    rows = _results_rows()
    studies = set()
    for link, _task, model, metric, method, log_loss, p, criterion in rows:
        study = re.fullmatch(r"\[(.+)\]\(docs/studies/\1/report\.md\)", link).group(1)
        studies.add(study)
        assert method == result(study, model, "hypros", metric), (study, metric)
        assert log_loss == result(study, model, "log", metric), (study, metric)
        assert p == paired_p(study, model, "log", metric), (study, metric)
        name, outcome = criterion.split()
        assert outcome == verdict(study, name), (study, name)
    reports = {p.parent.name for p in (REPO / "docs" / "studies").glob("*/report.md")}
    compared = {name for name in reports if _compares_a_method(name)}  # a learning-rate sweep compares none
    assert studies == compared, f"each study report that compares a method with log-loss has a row: missing {compared - studies}"


def _compares_a_method(name: str) -> bool:
    from hypros_lm.studies.spec import load_study

    baselines = load_study(name).baselines
    return baselines["method"] != baselines["log"]
