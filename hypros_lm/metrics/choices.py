"""Scores of a multiple-choice answer distribution."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def multiple_choice_brier(gold: int, probabilities: Sequence[float]) -> float:
    """Σ_j (p_j − 1[j = gold])² over this document's own choices, however many there are (0 … 2)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if not 0 <= gold < len(p):
        raise ValueError(f"gold choice {gold} is not among the document's {len(p)} choices")
    target = np.zeros_like(p)
    target[gold] = 1.0
    return float(np.sum((p - target) ** 2))
