"""Classification metrics from class probabilities: accuracy, macro-F1, multi-class Brier, gold-label NLL,
top-label ECE (10 and 15 bins) and the reliability table. Pure functions over tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hypros_lm.metrics.calibration import bin_sums, ece_from_bins, reliability_table


def macro_f1(predicted: Tensor, gold: Tensor, n_classes: int) -> float:
    """Mean over all classes of 2·TP / (2·TP + FP + FN) (0 for a class never gold nor predicted)."""
    scores = []
    for c in range(n_classes):
        tp = int(((predicted == c) & (gold == c)).sum())
        fp = int(((predicted == c) & (gold != c)).sum())
        fn = int(((predicted != c) & (gold == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / n_classes


def classification_metrics(probs: Tensor, gold: Tensor) -> dict[str, Any]:
    """Scores of (N, C) class probabilities against (N,) gold classes, under ``class_*`` names (the
    token-level scores of the label token over the whole vocabulary keep the language model's names)."""
    probs, gold = probs.double(), gold.long()
    n, n_classes = probs.shape
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == gold).double()
    onehot = torch.nn.functional.one_hot(gold, n_classes).double()
    bins10 = bin_sums(confidence, correct, 10)
    return {
        "class_accuracy": float(correct.mean()),
        "macro_f1": macro_f1(predicted, gold, n_classes),
        "class_brier": float(((probs - onehot) ** 2).sum(dim=1).mean()),
        "class_nll": float(-probs.gather(1, gold[:, None]).clamp_min(1e-12).log().mean()),
        "class_ece_10": ece_from_bins(bins10),
        "class_ece_15": ece_from_bins(bin_sums(confidence, correct, 15)),
        "class_reliability_10": reliability_table(bins10),
        "examples": n,
    }
