"""The documentation site builds with `mkdocs build --strict` (no broken link, no missing reference), documents every
exported name with its signature and docstring, generates its settings reference from the settings dataclasses, and
shows the results table and the API in a real headless Chromium."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO, headless_chromium

pytest.importorskip("mkdocs")


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "scripts" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-5000:]
    return out


def test_the_api_reference_documents_every_exported_name(site):
    import griffe

    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    package = griffe.load("hypros_lm", search_paths=[str(REPO)])
    exported = _hooks().exported_names()
    assert {"linear_scoring_loss", "patch_causal_lm", "HyProSSFTTrainer"} <= {n for names in exported.values() for n in names}
    for module, names in exported.items():
        for name in names:
            assert f'id="{module}.{name}"' in page, f"{module}.{name} is not on the API page"
            obj = package[f"{module.removeprefix('hypros_lm.')}.{name}"]
            docstring = obj.docstring if not obj.is_alias else obj.final_target.docstring
            assert docstring and docstring.value.strip(), f"{module}.{name} has no docstring"


def test_the_loss_options_table_is_the_functions_signature():
    from hypros_lm import linear_scoring_loss

    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    table = text.split("## Options of `linear_scoring_loss`", 1)[1].split("\n\n<!--", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    keyword_only = [n for n, p in inspect.signature(linear_scoring_loss).parameters.items() if p.kind is p.KEYWORD_ONLY]
    assert sorted(documented) == sorted(keyword_only)


def test_the_settings_reference_is_generated_from_the_dataclasses(site):
    from hypros_lm.settings_docs import setting_rows

    rows = setting_rows()
    undocumented = [f"{section}.{name}" for section, name, *_, doc in rows if not doc.strip()]
    assert not undocumented, f"settings without a description (a docstring under the field): {undocumented}"
    page = (site / "settings" / "index.html").read_text(encoding="utf-8")
    missing = [f"--{section}.{name}" for section, name, *_ in rows if f"--{section}.{name}" not in page]
    assert not missing and len(rows) > 50, missing


@pytest.mark.slow
def test_the_built_site_in_headless_chromium(site):
    from selenium.webdriver.common.by import By

    browser = headless_chromium()
    try:
        browser.get((site / "index.html").as_uri())
        heading = browser.find_element(By.ID, "results-at-a-glance")
        table = heading.find_element(By.XPATH, "following::table[1]")
        headers = [th.text for th in table.find_elements(By.TAG_NAME, "th")]
        assert headers == ["study", "task", "model", "metric", "HyProS", "log-loss", "seeds", "p (Holm)", "verdict"]
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        readme = (REPO / "README.md").read_text(encoding="utf-8").split("<!-- results -->\n", 1)[1]
        lines = readme.splitlines()
        quoted = lines[2:next(i for i, line in enumerate(lines) if not line.startswith("|"))]
        assert len(rows) == len(quoted) >= 2 and any("cpu-demo" in r.text and "test NLL" in r.text for r in rows)
        assert table.is_displayed()

        browser.get((site / "api" / "index.html").as_uri())
        entry = browser.find_element(By.ID, "hypros_lm.scoring.api.linear_scoring_loss")
        signature = entry.find_element(By.XPATH, "following::div[contains(@class, 'doc-signature')][1]").text
        assert "linear_scoring_loss(" in signature and "num_items_in_batch" in signature and "z_loss" in signature
        options = browser.find_element(By.ID, "options-of-linear_scoring_loss").find_element(By.XPATH, "following::table[1]")
        assert "z_loss" in options.text and "num_items_in_batch" in options.text
    finally:
        browser.quit()


def test_docstring_cross_references_render_as_links_never_as_raw_roles(site):
    """The docstrings speak mkdocstrings' dialect (``[`name`][module.name]``); a Sphinx role shows up raw."""
    role = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`")
    in_code = [str(p.relative_to(REPO)) for p in (REPO / "hypros_lm").rglob("*.py") if role.search(p.read_text())]
    assert not in_code, f"Sphinx roles in docstrings (use [`name`][hypros_lm.module.name]): {in_code}"
    raw = [str(p.relative_to(site)) for p in site.rglob("*.html") if role.search(p.read_text(encoding="utf-8"))]
    assert not raw, f"raw roles on the built site: {raw}"
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert api.count('class="autorefs autorefs-internal"') >= 10
