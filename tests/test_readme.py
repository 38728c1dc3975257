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


def install_lines(text: str) -> list[str]:
    """Every `pip install ...` command of a page (code blocks and inline code), without its comment."""
    return [m.group(0).split("  #")[0].strip() for m in re.finditer(r"pip install [^`\n]*", text)]


def test_every_install_line_names_a_path_a_wheel_or_a_url_never_the_bare_package():
    """hypros-lm is not on the public index: `pip install hypros-lm` would find nothing, or someone else's package."""
    lines = [(page.name, line) for page in PAGES for line in install_lines(page.read_text(encoding="utf-8"))]
    ours = [(page, line) for page, line in lines if re.search(r"hypros[-_]lm", line, re.I)]
    assert len(ours) >= 8, ours  # the README's and the integration page's
    for page, line in ours:
        for arg in line.split()[2:]:
            arg = arg.strip("'\"")
            if not re.search(r"hypros[-_]lm", arg, re.I):
                continue
            assert arg.startswith(("./", "/", "dist/")) or arg.split("[")[0].endswith(".whl") or " @ " in line \
                or "://" in arg, f"{page}: `{line}` names the bare package {arg!r}; use a path, a wheel or a URL"


def test_the_readme_shows_the_commands_block_and_a_figure_near_the_top():
    text = README.read_text(encoding="utf-8")
    block = text.split("## The commands it is used by", 1)[1].split("\n## ", 1)[0]
    for command in ("deepspeed --num_gpus 2 launch/pretrain.py", "--loss hypros", "launch/prepare_data.py",
                    "eval/zeroshot.py", "launch/finetune.py", "launch/study.py", "eval/report.py"):
        assert command in block, command
    rows = [line for line in block.splitlines() if line.startswith("| ") and ("launch/" in line or "eval/" in line)]
    assert len(rows) == 7 and all(re.search(r"\[[^]]+\]\(docs/[^)]+\.md\)", row) for row in rows), "a page link each"
    figure = re.search(r"!\[[^]]+\]\((docs/[^)]+\.png)\)", text)
    assert figure and (helpers.REPO / figure.group(1)).is_file() and text.index(figure.group(0)) < text.index("## Set-up")


def test_the_main_job_installs_no_browser_and_the_tests_do():
    demo, setup, tests = ((helpers.REPO / "scripts" / name).read_text() for name in ("demo.sh", "setup.sh", "test.sh"))
    assert "bash scripts/setup.sh" in demo and "test.sh" not in demo
    assert not re.search(r"apt-get|chromium", setup + demo), "the main job's set-up installs a browser"
    assert "apt-get install" in tests and "chromium chromium-driver" in tests


def test_the_main_job_says_what_it_does_before_deepspeed_starts_and_names_the_cpu_itself():
    """DeepSpeed's import takes about half a minute and, left to guess, it warns 'Setting accelerator to CPU' in
    each of its processes; the demo prints its plan first and tells DeepSpeed where there is no GPU. The sample on
    the pretraining page (scripts/demo_sample.py, from a real run) starts with that line."""
    demo = (helpers.REPO / "scripts" / "demo.sh").read_text()
    assert demo.index('echo "demo: ') < demo.index("exec deepspeed")
    assert "export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}" in demo
    page = (helpers.REPO / "docs" / "pretraining.md").read_text()
    sample = page[page.index("<!-- demo-output -->"):page.index("<!-- /demo-output -->")].split("```")[1]
    assert sample.strip().startswith("demo: HyProS pretraining")
