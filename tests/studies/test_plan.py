"""``launch/study.py FILE --plan``: each run's size, tokens, FLOPs and GPU-hours without training; the GPU scaling
study's design passes the project's rule for a law and stays within the HyProS proposal's budget, the old four-size
design is refused naming the rule; each objective trains at its own learning-rate rule, warm-up at least the stated
minimum."""

from __future__ import annotations

import re

import pytest
import yaml

from hypros_lm.commands.study import main
from hypros_lm.errors import InvalidValue
from hypros_lm.models import MODEL_SIZES
from hypros_lm.studies.spec import expand, load_study
from tests.helpers import REPO


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if re.match(r"^\w+-\w+-s\d", line)]


def test_the_gpu_scaling_plan_can_identify_a_law_within_the_proposal_s_budget(capsys):
    main(["studies/scaling-gpu.yaml", "--plan", "--gpu", "A100", "--mfu", "0.4"])
    out = capsys.readouterr().out
    rows = _rows(out)
    sizes = sorted({int(r[2].replace(",", "")) for r in rows})
    assert len(rows) == 7 * 3 * 3 and len(sizes) >= 6 and sizes[-1] / sizes[0] >= 10**1.5
    large = next(r for r in rows if r[1] == "large")
    size, tokens = MODEL_SIZES["large"], int(large[3].replace(",", ""))
    params = int(large[2].replace(",", ""))
    assert tokens >= 20 * params  # D = 20·N, whole steps
    attention = 12 * size.num_layers * size.hidden_size * 1024  # 12·L·H·Q·T, T = 1024
    assert float(large[4]) == pytest.approx((6 * params + attention) * tokens, rel=1e-2)  # tied head: N in matmuls
    assert float(large[5]) == pytest.approx(float(large[4]) / (312e12 * 0.4) / 3600, rel=2e-2)
    total = float(re.search(r"([\d,]+) GPU-hours on A100", out).group(1).replace(",", ""))
    assert total == pytest.approx(sum(float(r[5]) for r in rows), rel=1e-2) and total < 2000
    assert "within the HyProS proposal's 2,000 A100-hours" in out and "the design can identify a law" in out


def test_the_old_four_size_design_is_refused_naming_the_rule(tmp_path):
    spec = yaml.safe_load((REPO / "studies" / "scaling-gpu.yaml").read_text())
    spec["models"] = ["tiny", "small", "base", "large"]
    spec["scaling"]["fit_from"] = "tiny"
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(InvalidValue, match="cannot identify a scaling law: 4 sizes; a law with intervals needs at least 5"):
        main([str(tmp_path / "old.yaml"), "--plan"])


def test_each_objective_trains_at_its_own_rule_and_warms_up_at_least_the_minimum(tmp_path):
    study = load_study("scaling-gpu")
    runs = expand(study, tmp_path)
    for run in runs:
        rule = study.scaling.objective_lr[run.variation]
        assert rule.sweep == f"scaling-gpu-lr-{run.variation}"
        assert run.settings.optim.warmup_steps >= 100
    spec = yaml.safe_load((REPO / "studies" / "scaling-gpu.yaml").read_text())
    spec["scaling"]["objective_lr"]["brier"].update(value=1.0e-3)
    del spec["scaling"]["objective_lr"]["hypros"]["sweep"]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(InvalidValue, match=r"scaling.objective_lr.hypros names no sweep"):
        load_study(tmp_path / "s.yaml")
    del spec["scaling"]["objective_lr"]["hypros"]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    lrs = {}
    for run in expand(load_study(tmp_path / "s.yaml"), tmp_path / "runs"):
        lrs.setdefault((run.variation, run.model), run.settings.optim.lr)
    assert lrs[("brier", "mini")] == pytest.approx(lrs[("log", "mini")] / 3, rel=1e-2)  # its own rule


def test_a_one_size_budget_check_plans_without_a_law(capsys):
    main(["studies/scaling-cpu-d40.yaml", "--plan"])
    out = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 3 * 3 and {r[1] for r in rows} == {"w40"}
    assert all(int(r[3].replace(",", "")) >= 40 * int(r[2].replace(",", "")) for r in rows)  # D = 40·N
    assert "one size (w40): a check of one budget, compared per size; no law is fitted" in out
