"""The README cannot drift: its "Use HyProS in your own code" blocks run as written, and every table that
names its source file (`<!-- table: PATH -->` above it) appears in that file line for line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests import helpers

README = helpers.REPO / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def sourced_tables(text: str) -> list[tuple[str, list[str]]]:
    """(path, table lines) for each `<!-- table: path -->` marker and the table under it."""
    found = []
    for match in re.finditer(r"<!-- table: (\S+) -->\n((?:[ ]*\|.*\n)+)", text):
        found.append((match.group(1), [line.strip() for line in match.group(2).strip("\n").splitlines()]))
    return found


@pytest.mark.slow
def test_use_in_your_own_code_blocks_run(tmp_path, cache_dir):
    blocks = python_blocks(section("Use HyProS in your own code"))
    assert len(blocks) >= 3
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n\n".join(blocks))  # one namespace, in order, as a reader runs them
    env = {**helpers.test_env(cache_dir), "HYPROS_DATA_DIR": str(helpers.REPO.parent / "shared" / "data")}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "λ 0.50" in proc.stdout and "'hypros/lambda'" in proc.stdout


def test_readme_tables_match_the_files_they_name():
    tables = sourced_tables(README.read_text())
    assert tables, "no <!-- table: PATH --> markers in the README"
    for path, lines in tables:
        source = (helpers.REPO / path).read_text().splitlines()
        missing = [line for line in lines if line not in source]
        assert not missing, f"README table from {path} differs from the file; rows not in it: {missing}"
