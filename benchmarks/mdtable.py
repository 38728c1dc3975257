"""The Markdown table a benchmark ends its output with: the documentation shows it verbatim and names the output
file beside it (`<!-- table: docs/benchmarks/FILE -->`), and tests/test_readme.py checks the two agree."""

from __future__ import annotations


def print_table(header: list[str], rows: list[list[str]]) -> None:
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
