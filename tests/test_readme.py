"""The README and the documentation pages cannot drift: their code blocks marked `<!-- runnable -->` run as written
(the blocks of one page in one namespace, in order, as a reader runs them), and every table that names its source
file (`<!-- table: PATH -->` above it) appears in that file line for line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import helpers

README = helpers.REPO / "README.md"
PAGES = [README, *sorted((helpers.REPO / "docs").glob("*.md"))]


def runnable_blocks(text: str) -> list[str]:
    return re.findall(r"<!-- runnable -->\n```python\n(.*?)```", text, flags=re.S)


def sourced_tables(text: str) -> list[tuple[str, list[str]]]:
    """(path, table lines) for each `<!-- table: path -->` marker and the table under it."""
    found = []
    for match in re.finditer(r"<!-- table: (\S+) -->\n((?:[ ]*\|.*\n)+)", text):
        found.append((match.group(1), [line.strip() for line in match.group(2).strip("\n").splitlines()]))
    return found


def _run_blocks(page: Path, tmp_path, cache_dir) -> str:
    blocks = runnable_blocks(page.read_text(encoding="utf-8"))
    script = tmp_path / f"{page.stem}_blocks.py"
    script.write_text("\n\n".join(blocks))
    env = {**helpers.test_env(cache_dir), "HYPROS_DATA_DIR": str(helpers.REPO.parent / "shared" / "data")}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_readme_blocks_run(tmp_path, cache_dir):
    out = _run_blocks(README, tmp_path, cache_dir)
    function_loss = re.search(r"λ 0\.50  loss (\S+)", out).group(1)
    assert f"patched loss {function_loss}" in out  # the one-line patch scores as the function does


@pytest.mark.slow
def test_the_integration_pages_blocks_run(tmp_path, cache_dir):
    page = helpers.REPO / "docs" / "integrations.md"
    assert len(runnable_blocks(page.read_text())) >= 3
    out = _run_blocks(page, tmp_path, cache_dir)
    assert "λ 0.50" in out and "'hypros/lambda'" in out


def test_every_runnable_block_is_on_a_page_the_tests_run():
    with_blocks = {p.name for p in PAGES if runnable_blocks(p.read_text(encoding="utf-8"))}
    assert with_blocks == {"README.md", "integrations.md"}


def test_tables_match_the_files_they_name():
    tables = [(page, path, lines) for page in PAGES for path, lines in sourced_tables(page.read_text(encoding="utf-8"))]
    assert len({page for page, _, _ in tables}) >= 5, "the measured tables live on the documentation pages"
    for page, path, lines in tables:
        source = (helpers.REPO / path).read_text().splitlines()
        missing = [line for line in lines if line not in source]
        assert not missing, f"{page.name}: the table from {path} differs from the file; rows not in it: {missing}"


def test_the_readme_is_short_and_names_the_proposal_not_a_seed():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    prose = [README, *helpers.REPO.glob("docs/**/*.md"), *helpers.REPO.glob("hypros_lm/resources/studies/*.yaml")]
    seed_as_source = re.compile(r"the seed(?:'s| expected| (?:core|second))", re.I)
    misnamed = [(p.name, m.group(0)) for p in prose for m in seed_as_source.finditer(p.read_text(encoding="utf-8"))]
    assert not misnamed, f"'seed' names a random seed; the method's source is the HyProS proposal: {misnamed}"
