"""Real data for the examples (WikiText-2, Multi30k): the offline copies in $HYPROS_DATA_DIR or ../shared/data."""

from __future__ import annotations

import gzip
import os
from pathlib import Path


def data_folder(name: str = "wikitext-2") -> Path:
    """A data set's folder (``wikitext-2``, ``multi30k``, ...) in $HYPROS_DATA_DIR or ../shared/data beside the checkout."""
    roots = [Path(os.environ["HYPROS_DATA_DIR"])] if os.environ.get("HYPROS_DATA_DIR") else []
    roots += [base.parent / "shared" / "data" for base in (Path.cwd(), Path(__file__).resolve().parent.parent)]
    for root in roots:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"no {name}/ under {[str(r) for r in roots]}; set HYPROS_DATA_DIR to the folder that holds it")


def wikitext_file(split: str = "train") -> Path:
    """wiki.<split>.tokens(.gz) of WikiText-2 (v1)."""
    folder = data_folder("wikitext-2")
    for name in (f"wiki.{split}.tokens", f"wiki.{split}.tokens.gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no wiki.{split}.tokens(.gz) in {folder}")


def wikitext_text(split: str = "train", max_chars: int | None = None) -> str:
    path = wikitext_file(split)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
        return f.read(max_chars) if max_chars else f.read()
