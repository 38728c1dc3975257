"""MkDocs hooks (mkdocs.yml `hooks:`): pages generated from the code, so that the site cannot disagree with it.

- ``index.md``: the README, its links into ``docs/`` made relative to the site;
- ``settings.md``: the settings reference from the settings dataclasses (``hypros_lm.settings_docs.setting_rows``, the
  same rows ``--help`` prints);
- ``api.md``: one mkdocstrings entry per name exported at the package top and by the integrations.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTEGRATIONS = ("hypros_lm.integrations.transformers", "hypros_lm.integrations.trl", "hypros_lm.integrations.axolotl",
                "hypros_lm.integrations.torchtitan")


def _all_of(module: str) -> list[str]:
    """A module's ``__all__``, read from its source: the Axolotl plugin's module imports only where Axolotl is."""
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
    return next(list(ast.literal_eval(node.value)) for node in tree.body
                if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets))


def exported_names() -> dict[str, list[str]]:
    """Module -> the public names the API reference documents (``__all__`` of the package top and integrations)."""
    import hypros_lm

    top: dict[str, list[str]] = {}
    for name in hypros_lm.__all__:
        if name != "__version__":
            top.setdefault(hypros_lm._EXPORTS[name], []).append(name)
    return {**top, **{module: _all_of(module) for module in INTEGRATIONS}}


def api_reference() -> str:
    blocks = []
    for module, names in exported_names().items():
        blocks += [f"## `{module}`", ""] + [f"::: {module}.{name}\n" for name in names]
    return "\n".join(blocks)


def readme_as_home() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.replace("](docs/", "](")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "index.md":
        return readme_as_home()
    if page.file.src_uri == "settings.md":
        from hypros_lm.settings_docs import settings_reference

        return markdown.replace("<!-- settings reference -->", settings_reference())
    if page.file.src_uri == "api.md":
        return markdown.replace("<!-- api reference -->", api_reference())
    return markdown
