"""Calibration metrics over top-1 predictions: ECE (equal-width and equal-mass), MCE, reliability tables.

Everything is built on per-bin sums (count, Σ confidence, Σ correct): they add up across batches and
ranks, so a distributed evaluation all-reduces three small vectors and gets the exact ECE.
Bins are right-closed, ((i−1)/B, i/B], with confidence 0 in the first bin (Guo et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hypros_lm.errors import InvalidValue


@dataclass
class BinSums:
    count: Tensor  # (B,)
    confidence: Tensor  # (B,) Σ confidence
    correct: Tensor  # (B,) Σ correct

    def __add__(self, other: BinSums) -> BinSums:
        return BinSums(self.count + other.count, self.confidence + other.confidence, self.correct + other.correct)

    def stacked(self) -> Tensor:
        return torch.stack([self.count, self.confidence, self.correct])

    @classmethod
    def from_stacked(cls, t: Tensor) -> BinSums:
        return cls(t[0], t[1], t[2])


def bin_sums(confidence: Tensor, correct: Tensor, n_bins: int = 10) -> BinSums:
    """Equal-width bin sums of top-1 confidence and correctness (float64)."""
    if n_bins < 1:
        raise InvalidValue(f"n_bins={n_bins} must be ≥ 1")
    conf = confidence.detach().double().reshape(-1)
    corr = correct.detach().double().reshape(-1)
    idx = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    zeros = torch.zeros(n_bins, dtype=torch.float64, device=conf.device)
    return BinSums(zeros.index_add(0, idx, torch.ones_like(conf)), zeros.index_add(0, idx, conf),
                   zeros.index_add(0, idx, corr))


def ece_from_bins(b: BinSums) -> float:
    """Σ_b (n_b / N)·|acc_b − conf_b| = Σ_b |Σcorrect_b − Σconf_b| / N."""
    n = b.count.sum()
    return float((b.correct - b.confidence).abs().sum() / n) if n > 0 else 0.0


def mce_from_bins(b: BinSums) -> float:
    """max over non-empty bins of |acc_b − conf_b|."""
    filled = b.count > 0
    if not filled.any():
        return 0.0
    return float(((b.correct - b.confidence)[filled] / b.count[filled]).abs().max())


def expected_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int = 10, *, adaptive: bool = False) -> float:
    """ECE with equal-width bins, or equal-mass bins (each holding ~N/B predictions) if adaptive."""
    if not adaptive:
        return ece_from_bins(bin_sums(confidence, correct, n_bins))
    conf = confidence.detach().double().reshape(-1)
    corr = correct.detach().double().reshape(-1)
    if conf.numel() == 0:
        return 0.0
    order = torch.argsort(conf)
    total = 0.0
    for part in torch.tensor_split(order, min(n_bins, conf.numel())):
        total += float((corr[part].sum() - conf[part].sum()).abs())
    return total / conf.numel()


def maximum_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int = 10) -> float:
    return mce_from_bins(bin_sums(confidence, correct, n_bins))


def reliability_table(b: BinSums) -> list[dict[str, float]]:
    """Rows behind a reliability diagram: bin edges, count, mean confidence, accuracy (None when empty)."""
    n_bins = b.count.numel()
    rows = []
    for i in range(n_bins):
        count = int(b.count[i])
        rows.append({
            "lo": i / n_bins, "hi": (i + 1) / n_bins, "count": count,
            "confidence": float(b.confidence[i] / count) if count else None,
            "accuracy": float(b.correct[i] / count) if count else None,
        })
    return rows
