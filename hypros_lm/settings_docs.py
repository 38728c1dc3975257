"""The settings' documentation, generated from the settings dataclasses of hypros_lm.config: each field's docstring
read from the source, ``--help`` of the training commands and the documentation's settings reference
(scripts/docs_hooks.py)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Collection
from typing import Any, Literal

from hypros_lm.config import ALIASES, sections


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring: the string literal written under it in the class body (read from the source)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _type_name(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def setting_rows() -> list[tuple[str, str, str, Any, str]]:
    """(section, field, type, default, description) of every setting, in the order of the dataclasses: what
    ``--help`` and the documentation's settings reference both print."""
    rows = []
    for section, cls in sections().items():
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((section, f.name, _type_name(hints[f.name]), default, docs.get(f.name, "")))
    return rows


def settings_help(keys: Collection[str] | None = None) -> str:
    """Every setting (or those of ``keys``, dotted), grouped by section, with its type, default and description;
    then the short flags."""
    where = "; in a --config YAML file as section: {key: value}" if keys is None else ""
    lines = [f"Settings (--section.key VALUE{where}):"]
    previous = None
    for section, name, type_name, default, doc in setting_rows():
        if keys is not None and f"{section}.{name}" not in keys:
            continue
        if section != previous:
            lines += ["", f"{section}:"]
            previous = section
        lines.append(f"  --{section}.{name}  ({type_name}; default {default!r})")
        if doc:
            lines.append(textwrap.fill(doc, width=110, initial_indent="      ", subsequent_indent="      "))
    lines += ["", "Short flags:"] + [f"  --{short:<18} = --{key}" for short, key in ALIASES.items()
                                     if keys is None or key in keys]
    return "\n".join(lines)


def settings_reference() -> str:
    """The settings as Markdown tables, one per section (the documentation's settings page)."""
    out, previous = [], None
    for section, name, type_name, default, doc in setting_rows():
        if section != previous:
            out += ["", f"## `{section}`", "", "| setting | type | default | description |", "|---|---|---|---|"]
            previous = section
        out.append(f"| `--{section}.{name}` | {type_name} | `{default!r}` | {doc.replace('|', chr(92) + '|')} |")
    out += ["", "## Short flags", "", "| flag | is |", "|---|---|"]
    out += [f"| `--{short}` | `--{key}` |" for short, key in ALIASES.items()]
    return "\n".join(out).strip() + "\n"
