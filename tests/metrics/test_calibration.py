"""Calibration metrics against cases worked out by hand."""

from __future__ import annotations

import pytest
import torch

from hypros_lm.metrics import (
    bin_sums,
    ece_from_bins,
    expected_calibration_error,
    maximum_calibration_error,
    reliability_table,
)


def test_ece_worked_by_hand():
    # 10 bins. Bin (0.2,0.3]: confidences 0.25, 0.25, correct 1, 0 -> acc 0.5, conf 0.25, gap 0.25, weight 2/5
    # Bin (0.8,0.9]: 0.9, 0.9, 0.85 with correct 1, 1, 0 -> acc 2/3, conf 0.8833.., gap 0.21667, weight 3/5
    conf = torch.tensor([0.25, 0.25, 0.9, 0.9, 0.85])
    corr = torch.tensor([1, 0, 1, 1, 0])
    expected = 2 / 5 * 0.25 + 3 / 5 * abs(2 / 3 - (0.9 + 0.9 + 0.85) / 3)
    assert expected_calibration_error(conf, corr, 10) == pytest.approx(expected)
    assert maximum_calibration_error(conf, corr, 10) == pytest.approx(0.25)
    rows = reliability_table(bin_sums(conf, corr, 10))
    assert rows[2]["count"] == 2 and rows[2]["accuracy"] == 0.5 and rows[2]["confidence"] == pytest.approx(0.25)
    assert rows[8]["count"] == 3 and rows[0]["accuracy"] is None


def test_right_closed_bins_and_edges():
    sums = bin_sums(torch.tensor([0.0, 0.1, 0.1000001, 1.0], dtype=torch.float64), torch.tensor([0, 0, 0, 1]), 10)
    assert sums.count.tolist() == [2, 1, 0, 0, 0, 0, 0, 0, 0, 1]


def test_perfectly_calibrated_case_has_zero_ece():
    # in each bin the accuracy equals the confidence exactly: 0.25 with 1 of 4 right, 0.75 with 3 of 4 right
    conf = torch.tensor([0.25] * 4 + [0.75] * 4)
    corr = torch.tensor([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(conf, corr, 10) == 0.0
    assert expected_calibration_error(conf, corr, 15) == 0.0
    assert expected_calibration_error(conf, corr, 2, adaptive=True) == 0.0


def test_adaptive_bins_hold_equal_mass():
    conf = torch.tensor([0.1, 0.2, 0.3, 0.9])
    corr = torch.tensor([0, 1, 1, 1])
    # two equal-mass bins: {0.1, 0.2} (acc 0.5, conf 0.15) and {0.3, 0.9} (acc 1, conf 0.6)
    assert expected_calibration_error(conf, corr, 2, adaptive=True) == pytest.approx(0.5 * 0.35 + 0.5 * 0.4)


def test_bin_sums_add_up_across_shards():
    torch.manual_seed(1)
    conf, corr = torch.rand(1000), (torch.rand(1000) < 0.6).long()
    whole = bin_sums(conf, corr, 15)
    parts = bin_sums(conf[:300], corr[:300], 15) + bin_sums(conf[300:], corr[300:], 15)
    assert ece_from_bins(parts) == pytest.approx(ece_from_bins(whole))
    assert ece_from_bins(whole) == pytest.approx(expected_calibration_error(conf, corr, 15))
