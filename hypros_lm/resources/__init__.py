"""Files shipped with the package: DeepSpeed configs, run configs and study files (a checkout links
ds_configs/, configs/ and studies/ here), found by name wherever hypros-lm is installed."""

from __future__ import annotations

from pathlib import Path

from hypros_lm.errors import MissingFile

ROOT = Path(__file__).resolve().parent


def find(kind: str, name: str, *, suffixes: tuple[str, ...]) -> Path:
    """A path as given, or the name of a shipped ``kind`` file (``ds_configs``, ``configs``, ``studies``), with or
    without its suffix; else an error listing what ships."""
    folder = ROOT / kind
    for candidate in (Path(name), *(folder / f"{name}{s}" for s in ("", *suffixes))):
        if candidate.is_file():
            return candidate
    shipped = sorted(p.stem for p in folder.iterdir() if p.suffix in suffixes)
    raise MissingFile(f"{name!r}: no such file, nor a shipped {kind} name; give a path or one of {shipped}")
