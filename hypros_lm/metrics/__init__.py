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

__all__ = [
    "BinSums", "bin_sums", "ece_from_bins", "expected_calibration_error", "maximum_calibration_error",
    "mce_from_bins", "reliability_table",
]
