"""The README's compatibility table is what the tests run: it is rendered from COVERAGE, the same mapping the
integration tests take their architectures from, so a cell cannot claim a combination no test checks."""

from __future__ import annotations

from tests.helpers import REPO
from tests.integrations.hf_models import ARCHITECTURES, COVERAGE, small_config


def compatibility_table() -> list[str]:
    columns = list(COVERAGE)
    rows = [f"| architecture (`model_type`) | {' | '.join(columns)} |", "|---|" + "---|" * len(columns)]
    for arch in ARCHITECTURES:
        name = type(small_config(arch)).__name__.removesuffix("Config")
        cells = ["✓" if arch in COVERAGE[c] else "" for c in columns]
        rows.append(f"| {name} (`{arch}`) | {' | '.join(cells)} |")
    return rows


def test_the_readme_compatibility_table_is_the_tested_coverage():
    readme = (REPO / "README.md").read_text().splitlines()
    table = compatibility_table()
    assert table[0] in readme, "the README has no compatibility table; paste:\n" + "\n".join(table)
    start = readme.index(table[0])
    assert readme[start : start + len(table)] == table, "the README's compatibility table differs:\n" + "\n".join(table)
    assert all(set(archs) <= set(ARCHITECTURES) for archs in COVERAGE.values())
