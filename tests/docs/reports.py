"""Reading a study report's tables (docs/studies/<name>/report.md): the cells the README's results table quotes."""

from __future__ import annotations

import json

from tests.helpers import REPO


def schema(study: str) -> int:
    """The analysis.json schema the study's report was rendered with (1: before numbers-only criteria, t intervals
    and Holm's adjustment; such a study awaits its re-run)."""
    return json.loads((REPO / "docs" / "studies" / study / "analysis.json").read_text(encoding="utf-8")).get("schema", 1)


def report_text(study: str) -> str:
    return (REPO / "docs" / "studies" / study / "report.md").read_text(encoding="utf-8")


def table(text: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table under the ``## heading...`` line, as dicts by column name."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {heading}"))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip()[1:-1].split("|")])  # empty last cells kept
    header, body = rows[0], [r for r in rows[2:]]
    return [dict(zip(header, r, strict=True)) for r in body]


def result(study: str, model: str, variation: str, metric: str) -> str:
    """A 'mean ± std' cell of the report's results table."""
    return next(r[metric] for r in table(report_text(study), "Results") if r["model"] == model and r["variation"] == variation)


def seeds(study: str, model: str, variation: str) -> str:
    """The n (seeds) cell of the report's results table."""
    return next(r["n"] for r in table(report_text(study), "Results") if r["model"] == model and r["variation"] == variation)


def paired_p(study: str, model: str, baseline: str, metric: str, column: str = "p (Holm)") -> str:
    """The paired t-test's Holm-adjusted (or, with column="p", raw) p of the method against a baseline (metric as the
    results table names it)."""
    rows = table(report_text(study), "Paired comparisons")
    return next(r[column] for r in rows if r["model"] == model and r["vs"] == baseline and r["metric"].startswith(metric))


def verdict(study: str, criterion: str) -> str:
    row = next(r for r in table(report_text(study), "Criteria") if r[""] == criterion)
    return row["verdict"].strip("*")
