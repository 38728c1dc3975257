"""The criteria on constructed results whose verdict is known: C2's time-to-target only where the target
discriminates, C3's "no worse" as non-inferiority by the margin, C5 over independent units, Holm's adjustment within
a family of comparisons; and a study file's bad criteria named in one line before anything runs."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from hypros_lm.studies.analysis import analyse
from hypros_lm.studies.results import RunResult
from hypros_lm.studies.sections import Baselines
from hypros_lm.studies.spec import Study, load_study
from hypros_lm.studies.stats import holm
from tests.studies.test_runner import STUDY


def _run(variation: str, model: str, seed: int, *, nll: float, curve: list[float], ece: float = 0.05) -> RunResult:
    """A finished run: validation NLL ``curve`` at steps 100, 200, …, test NLL ``nll``."""
    points = [{"step": 100 * (i + 1), "elapsed_s": 10.0 * (i + 1), "tokens": 1000 * (i + 1), "loss_log": v}
              for i, v in enumerate(curve)]
    train = [{"step": 100, "tokens": 1000, "tokens_per_s": 100.0, "flops_per_token": 10.0}]
    run = RunResult(f"{variation}-{model}-s{seed}", variation, model, seed, 1000, 1000 * len(curve),
                    100 * len(curve), points, train, {})
    run.test = {"nll": nll, "brier": 0.8, "ece_10": ece, "accuracy": 0.3, "auc": float(np.mean(curve))}
    return run


def _study(models=("nano",)) -> Study:
    return Study(name="t", task="pretrain", variations={"log": {}, "hypros": {}}, models=list(models),
                 seeds=[1, 2, 3], baselines=Baselines("hypros", "log", "log"))


def _criterion(res, cid: str) -> dict:
    return next(c for c in res["criteria"] if c["id"] == cid)


def test_c2_passes_a_matched_method_that_reaches_a_discriminating_target_sooner():
    """Same test NLL within the margin; log-loss's mean final validation loss is 3.0: the method reaches it at step
    ~150, log-loss's runs at 400 or never (counted at their last step): ≥ 25 % fewer steps, so C2 passes."""
    seeds = (1, 2, 3)
    runs = [_run("log", "nano", s, nll=3.0 + d, curve=[4.0, 3.5, 3.2, 3.0 + d])
            for s, d in zip(seeds, (0.002, -0.002, 0.0), strict=True)]
    runs += [_run("hypros", "nano", s, nll=3.0 + d, curve=[3.5, 2.9, 2.9, 2.9])
             for s, d in zip(seeds, (0.0, 0.001, -0.001), strict=True)]
    res = analyse(_study(), runs)
    c2 = _criterion(res, "C2")
    (m,) = c2["measurements"]
    assert res["targets"]["nano"] == pytest.approx(3.0) and res["target_rule"] == "log-loss mean final"
    assert m["extra"]["informative"] and m["extra"]["faster"] and m["extra"]["matched"] == "no worse"
    assert m["extra"]["reached_log"] == 2 and m["extra"]["steps_method"] < 0.75 * m["extra"]["steps_log"]
    assert c2["verdict"] == "pass"


def test_c2_does_not_pass_on_a_target_every_run_meets_at_its_first_evaluation():
    """A study-file target of 5.0 that every run is below at its first evaluation says nothing about speed: reported
    uninformative, and a matched method does not pass on it."""
    runs = [_run(v, "nano", s, nll=3.0 + s / 1000, curve=[4.0, 3.5, 3.0]) for v in ("log", "hypros") for s in (1, 2, 3)]
    study = _study()
    study.target = type(study.target)(value=5.0)
    c2 = _criterion(analyse(study, runs), "C2")
    (m,) = c2["measurements"]
    assert not m["extra"]["informative"] and not m["extra"]["faster"] and m["extra"]["matched"] == "no worse"
    assert c2["verdict"] == "fail"


@pytest.mark.parametrize(("worse_by", "verdict"), [(0.0, "pass"), (0.2, "fail")])
def test_c3_needs_the_task_metric_no_worse_by_the_margin_not_merely_untested(worse_by, verdict):
    """ECE 40 % lower (significant) in both cases; test NLL 0.2 nats worse fails C3 (its bound lies below −0.02)."""
    noise = (0.001, -0.002, 0.001)
    runs = [_run("log", "nano", s, nll=3.0 + e, curve=[3.0], ece=0.05 + e) for s, e in zip((1, 2, 3), noise, strict=True)]
    runs += [_run("hypros", "nano", s, nll=3.0 + worse_by - e, curve=[3.0], ece=0.03 + e / 2)
             for s, e in zip((1, 2, 3), noise, strict=True)]
    c3 = _criterion(analyse(_study(), runs), "C3")
    ece, _, task = c3["measurements"]
    assert ece["verdict"] == "pass" and ece["value"] == pytest.approx(0.4, abs=0.02)
    assert task["margin"] == 0.02 and task["extra"]["non_inferiority"] == ("no worse" if verdict == "pass" else "worse")
    assert c3["verdict"] == verdict


def test_c5_counts_one_unit_per_model_and_seed_and_needs_enough_of_them():
    """Two sizes × three seeds: six units on the task metric (not the 90 outcomes of several metrics); one size:
    three units, too few for a binomial p below 0.05 (0.5³ = 0.125), so not measured."""
    runs = [_run(v, m, s, nll=3.0 - (v == "hypros") * 0.01 * s, curve=[3.0]) for v in ("log", "hypros")
            for m in ("nano", "micro") for s in (1, 2, 3)]
    c5 = _criterion(analyse(_study(("nano", "micro")), runs), "C5")
    (m,) = c5["measurements"]
    assert m["n"] == 6 and m["extra"]["wins"] == 6 and m["extra"]["unit"] == "model size × seed"
    assert m["p"] == pytest.approx(0.5 ** 6) and c5["verdict"] == "pass"
    one = _criterion(analyse(_study(), [r for r in runs if r.model == "nano"]), "C5")
    assert one["verdict"] == "not measured" and one["measurements"][0]["n"] == 3 and "needs ≥ 5" in one["reason"]


def test_comparisons_are_holm_adjusted_within_each_metric_across_sizes():
    rng = np.random.default_rng(0)
    runs = [_run(v, m, s, nll=3.0 + (v == "hypros") * shift + rng.normal(0, 0.01), curve=[3.0])
            for v in ("log", "hypros") for m, shift in (("nano", 0.02), ("micro", 0.05)) for s in (1, 2, 3)]
    rows = [c for c in analyse(_study(("nano", "micro")), runs)["comparisons"] if c["metric"] == "nll"]
    assert [r["family"] for r in rows] == ["nll", "nll"] and all(r["n"] == 3 and r["tested"] for r in rows)
    assert [r["p_adjusted"] for r in rows] == pytest.approx(holm([r["p"] for r in rows]))
    assert all(r["p_adjusted"] >= r["p"] for r in rows)


def _file(tmp_path, **changes) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**STUDY, **changes}))
    return str(path)


@pytest.mark.parametrize(("changes", "message"), [
    ({"criteria": {"margins": {"nll": -0.1}}}, r"criteria.margins.nll=-0.1: give a number ≥ 0 in the metric's units"),
    ({"criteria": {"margins": {"bleu": "big"}}}, r"criteria.margins.bleu='big': give a number ≥ 0"),
    ({"criteria": {"families": {"calibration": []}}}, r"criteria.families.calibration=\[\] names no test"),
    ({"criteria": {"margin": {"nll": 0.1}}}, r"criteria: unknown key 'margin'; did you mean 'margins'\?"),
    ({"criteria": {}, "seeds": [1]}, r"seeds=\[1\]: the method is compared .* a test needs at least 3"),
    ({"target": {"metric": "loss_log", "value": "low"}}, r"target.value='low' is not a valid float"),
    ({"timing": {"steps": 2}}, r"timing.steps=2: time at least 3 steps"),
])
def test_bad_criteria_and_sections_are_named_in_one_line(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message) as err:
        load_study(_file(tmp_path, **changes))
    assert "\n" not in str(err.value)
