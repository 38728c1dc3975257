"""Evaluation splits held out of a source that has only a training split (a local file, a folder without a
validation file, a hub set without one).

Documents are ranked by a seeded hash of their text, so the choice depends on the source and the seed
alone (never on workers, ranks or shard sizes), and copies of a text always land in the same split.
Validation takes the lowest-ranked documents until it holds at least ``fraction`` of them and about
``min_tokens`` tokens (counted as characters / 4 while choosing; the exact count is printed once tokenized),
at most a tenth of the source; a test split, when asked for, the next as many. Training keeps the rest.
A streamed hub set cannot be counted first: there a document is held out when its rank is below
``fraction``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from hypros_lm.errors import InvalidValue

CHARS_PER_TOKEN = 4  # for choosing documents only; the manifest records exact token counts
MAX_SHARE = 0.1  # never more than this share of the documents is held out per part


@dataclass(frozen=True)
class Holdout:
    """Which documents of the ``source_split`` split a held-out ``parts`` (validation[, test]) take."""

    fraction: float = 0.005
    min_tokens: int = 25_000
    seed: int = 0
    parts: tuple[str, ...] = ("validation",)
    source_split: str = "train"

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= MAX_SHARE:
            raise InvalidValue(f"data.holdout_fraction={self.fraction} must lie in (0, {MAX_SHARE}]")
        if self.min_tokens < 0:
            raise InvalidValue(f"data.holdout_min_tokens={self.min_tokens} must be ≥ 0")

    def identity(self) -> dict:
        """As JSON keeps it (lists, not tuples): a resumed preparation compares it with the saved one."""
        return {**asdict(self), "parts": list(self.parts)}

    def describe(self, part: str) -> str:
        rule = f"a seeded {self.fraction:.2%} of the documents, at least ~{self.min_tokens:,} tokens, seed {self.seed}"
        if part == self.source_split:
            return f"what remains after holding out {' and '.join(self.parts)} ({rule})"
        return f"held out of {self.source_split} ({rule})"


def _rank(seed: int, text: str) -> float:
    """A uniform number in [0, 1) from the seed and the document's text: copies of a text share it, so they
    land in the same split (real corpora hold duplicates)."""
    digest = hashlib.blake2b(text.encode(), digest_size=8, key=seed.to_bytes(8, "little", signed=True)).digest()
    return int.from_bytes(digest, "little") / 2**64


def cut_points(holdout: Holdout, documents: Iterable[str]) -> list[float]:
    """Upper rank bounds of the held-out parts, in order: a document whose rank is below the first goes to the
    first part, below the second to the second, and so on; the rest stay in training."""
    ranked = sorted((_rank(holdout.seed, doc), len(doc)) for doc in documents)
    n = len(ranked)
    per_part_cap = max(1, int(MAX_SHARE * n))
    want_docs = max(1, math.ceil(holdout.fraction * n))
    want_chars = holdout.min_tokens * CHARS_PER_TOKEN
    cuts, pos = [], 0
    for _ in holdout.parts:
        docs = chars = 0
        while pos < n and (docs < want_docs or chars < want_chars) and docs < per_part_cap:
            docs, chars, pos = docs + 1, chars + ranked[pos][1], pos + 1
        while pos < n and ranked[pos][0] == ranked[pos - 1][0]:  # copies of the last text come along
            pos += 1
        cuts.append(ranked[pos][0] if pos < n else 1.0)
    if pos >= n:
        raise InvalidValue(f"the source has {n} documents: too few to hold out {', '.join(holdout.parts)}; "
                           f"give a separate validation file")
    return cuts


_CUTS: dict[tuple[str, Holdout], list[float]] = {}  # per process: the train and validation passes share it


def part_of(holdout: Holdout, documents: Callable[[], Iterable[str]], *, key: str,
            countable: bool) -> Callable[[str], str]:
    """text → the part the document belongs to (``holdout.source_split`` for the documents training keeps).
    ``countable`` sources are read once first (local files); others are decided document by document, by
    rank below ``fraction`` per part."""
    if countable:
        if (key, holdout) not in _CUTS:
            _CUTS[(key, holdout)] = cut_points(holdout, documents())
        cuts = _CUTS[(key, holdout)]
    else:
        cuts = [holdout.fraction * (k + 1) for k in range(len(holdout.parts))]

    def part(text: str) -> str:
        u = _rank(holdout.seed, text)
        return next((p for p, cut in zip(holdout.parts, cuts, strict=True) if u < cut), holdout.source_split)

    return part
