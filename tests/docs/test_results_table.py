"""The README's results at a glance: every cell is the study report's own (its results table, its paired comparisons,
its criteria), so the summary cannot drift from the reports it links; a study whose report predates the corrected
statistics (analysis schema 1) is not quoted but named as awaiting its re-run."""

from __future__ import annotations

import re

from tests.docs.reports import paired_p, result, schema, seeds, verdict
from tests.helpers import REPO


def _readme_block(marker: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split(f"<!-- {marker} -->\n", 1)[1].splitlines()


def _results_rows() -> list[list[str]]:
    rows = []
    for line in _readme_block("results"):
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert rows[0] == ["study", "task", "model", "metric", "HyProS", "log-loss", "seeds", "p (Holm)", "verdict"]
    return rows[2:]


def test_every_cell_of_the_results_table_is_the_reports():
    studies = set()
    for link, _task, model, metric, method, log_loss, n, p, criterion in _results_rows():
        study = re.fullmatch(r"\[(.+)\]\(docs/studies/\1/report\.md\)", link).group(1)
        studies.add(study)
        assert method == result(study, model, "hypros", metric), (study, metric)
        assert log_loss == result(study, model, "log", metric), (study, metric)
        assert n == seeds(study, model, "hypros") == seeds(study, model, "log"), (study, model)
        assert p == paired_p(study, model, "log", metric), (study, metric)
        name, outcome = criterion.split(maxsplit=1)
        assert outcome == verdict(study, name), (study, name)
    reports = {p.parent.name for p in (REPO / "docs" / "studies").glob("*/report.md")}
    current = {name for name in reports if schema(name) >= 2 and _compares_a_method(name)}  # a sweep compares none
    assert studies == current, f"each current study report that compares a method has a row: missing {current - studies}"


def test_the_studies_awaiting_their_re_run_are_named_and_not_quoted():
    """Reports rendered before the corrected statistics are listed under the table, linked, and quoted nowhere in it."""
    block = _readme_block("pending")
    paragraph = " ".join(block[: block.index("")] if "" in block else block)
    named = set(re.findall(r"\[([\w-]+)\]\(docs/studies/\1/report\.md\)", paragraph))
    reports = {p.parent.name for p in (REPO / "docs" / "studies").glob("*/report.md")}
    assert named == {name for name in reports if schema(name) < 2}


def _compares_a_method(name: str) -> bool:
    from hypros_lm.studies.spec import load_study

    return load_study(name).compares_method
