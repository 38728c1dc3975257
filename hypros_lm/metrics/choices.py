"""Scores of a multiple-choice answer distribution."""

from __future__ import annotations

from collections.abc import Sequence

from hypros_lm.errors import InvalidValue


def multiple_choice_brier(gold: int, probabilities: Sequence[float]) -> float:
    """Σ_j (p_j − 1[j = gold])² over this document's own choices, however many there are (0 … 2)."""
    if not 0 <= gold < len(probabilities):
        raise InvalidValue(f"gold choice {gold} is not among the document's {len(probabilities)} choices")
    return float(sum((float(p) - (j == gold)) ** 2 for j, p in enumerate(probabilities)))
