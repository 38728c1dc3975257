"""C1 is judged only from measurements that allow a verdict: paired step times whose spread straddles the
3 % threshold (runs that shared the cores) give "not measured", never a pass."""

from __future__ import annotations

import numpy as np
import pytest

from hypros_lm.studies.context import Context, by_cell
from hypros_lm.studies.criteria import c1_step_time
from hypros_lm.studies.results import RunResult
from hypros_lm.studies.sections import Baselines
from hypros_lm.studies.spec import Study


def _run(variation: str, seed: int, seconds_per_step: float) -> RunResult:
    train = [{"step": 10 * k, "tokens": 1000 * 10 * k, "tokens_per_s": 1000 / seconds_per_step} for k in (1, 2, 3)]
    return RunResult(f"{variation}-nano-s{seed}", variation, "nano", seed, 1, 30_000, 30, [], train, {})


def _c1(times: dict[str, list[float]], timings: dict | None = None):
    runs = [_run(v, seed, t) for v, ts in times.items() for seed, t in enumerate(ts, 1)]
    study = Study(name="t", description="", task="pretrain", ranks=1, base={}, variations={"log": {}, "hypros": {}},
                  models=["nano"], seeds=[1, 2, 3], evaluations={}, baselines=Baselines("hypros", "log", "log"))
    ctx = Context(study, by_cell(runs), ["nano"], {"nano": 0.0}, [], timings or {})
    return c1_step_time(ctx, [])


def test_a_spread_across_the_threshold_is_not_measured():
    # the cpu-demo report's case: HyProS "4.4 % faster" from runs whose step times varied by ±40 %
    c1 = _c1({"log": [0.82, 0.45, 1.20], "hypros": [0.60, 0.70, 0.95]})
    (row,) = c1.measurements
    assert c1.verdict == "not measured" and "an interval spans 1.03" in c1.reason
    assert row.low < 1.03 < row.high and row.n == 3 and row.verdict == "not measured"


def test_one_pair_is_not_measured():
    c1 = _c1({"log": [0.35], "hypros": [1.55]})  # the new user's "38.9 % faster ... PASS" from one pair
    assert c1.verdict == "not measured" and c1.measurements[0].low is None and c1.measurements[0].n == 1


@pytest.mark.parametrize(("hypros", "verdict"), [([0.401, 0.503, 0.602], "pass"), ([0.44, 0.55, 0.66], "fail")])
def test_consistent_pairs_give_a_verdict(hypros, verdict):
    c1 = _c1({"log": [0.400, 0.500, 0.600], "hypros": hypros})
    ratios = np.divide(hypros, [0.400, 0.500, 0.600])
    half = 4.302653 * ratios.std(ddof=1) / np.sqrt(3)  # t_{2, 0.975}
    (row,) = c1.measurements
    assert c1.verdict == verdict and (row.low, row.high) == pytest.approx((ratios.mean() - half, ratios.mean() + half))


@pytest.mark.parametrize(("ratio", "spread", "verdict"),
                         [(1.01, 0.002, "pass"), (1.06, 0.002, "fail"), (1.03, 0.05, "not measured")])
def test_an_interleaved_timing_decides_where_the_study_made_one(ratio, spread, verdict):
    log = [0.5 + 0.01 * np.sin(i) for i in range(12)]  # the machine's drift hits both steps of a pair alike
    method = [x * (ratio + spread * (-1) ** i) for i, x in enumerate(log)]
    timing = {"nano": {"ratio": float(np.median(method) / np.median(log)), "method_s": float(np.median(method)),
                       "log_s": float(np.median(log)), "steps": 12, "log_times": log, "method_times": method}}
    c1 = _c1({"log": [0.82, 0.45, 1.20], "hypros": [0.60, 0.70, 0.95]}, timing)  # run-level times: no verdict
    assert c1.verdict == verdict and "interleaved timing" in c1.text
    assert c1.measurements[0].n == 12 and c1.measurements[0].extra["source"] == "interleaved timing"
