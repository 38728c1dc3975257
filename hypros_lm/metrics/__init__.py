"""Evaluation metrics as pure functions over tensors."""

from hypros_lm.metrics.calibration import (
    BinSums,
    bin_sums,
    ece_from_bins,
    expected_calibration_error,
    maximum_calibration_error,
    mce_from_bins,
    reliability_table,
)
from hypros_lm.metrics.choices import multiple_choice_brier

__all__ = [
    "BinSums", "bin_sums", "multiple_choice_brier", "ece_from_bins", "expected_calibration_error", "maximum_calibration_error",
    "mce_from_bins", "reliability_table",
]
