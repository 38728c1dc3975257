"""Real WikiText-2 text for the examples: the offline copy in $HYPROS_DATA_DIR or ../shared/data."""

from __future__ import annotations

import gzip
import os
from pathlib import Path


def wikitext_file(split: str = "train") -> Path:
    """wiki.<split>.tokens(.gz) of WikiText-2 (v1), from $HYPROS_DATA_DIR or ../shared/data beside the checkout."""
    roots = [Path(os.environ["HYPROS_DATA_DIR"])] if os.environ.get("HYPROS_DATA_DIR") else []
    roots += [base.parent / "shared" / "data" for base in (Path.cwd(), Path(__file__).resolve().parent.parent)]
    for root in roots:
        for name in (f"wiki.{split}.tokens", f"wiki.{split}.tokens.gz"):
            if (root / "wikitext-2" / name).is_file():
                return root / "wikitext-2" / name
    raise FileNotFoundError(f"no wikitext-2/wiki.{split}.tokens(.gz) under {[str(r) for r in roots]}; "
                            "set HYPROS_DATA_DIR to the folder that holds wikitext-2/")


def wikitext_text(split: str = "train", max_chars: int | None = None) -> str:
    path = wikitext_file(split)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
        return f.read(max_chars) if max_chars else f.read()
