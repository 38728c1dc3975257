"""A two-run miniature of studies/mt-cpu.yaml end to end (launch/study.py, then eval/report.py) on real Multi30k
and newstest2014: the report's BLEU is sacreBLEU recomputed from the runs' prediction files."""

from __future__ import annotations

import json

import pytest
import yaml

from hypros_lm.runs import RunFolder
from hypros_lm.tasks.seq2seq import get_task, load_pairs
from tests.helpers import REPO, run_python

pytestmark = pytest.mark.slow
LIMIT = 8


def _miniature(tmp_path, init_from) -> tuple:
    study = yaml.safe_load((REPO / "studies" / "mt-cpu.yaml").read_text())
    study["variations"] = {k: study["variations"][k] for k in ("log", "hypros")}
    study.pop("sweep")
    study.pop("timing")
    study["baselines"] = {"method": "hypros", "log": "log", "bounded": "log"}
    study["models"], study["seeds"], study["criteria"] = ["nano"], [1], {"pilot": True}
    study["base"]["task"]["init_from"] = str(init_from)
    study["base"]["data"]["seq_len"] = 96
    study["base"]["train"].update(max_steps=2, micro_batch_size=4, eval_every=1, eval_batches=1, save_every=2,
                                  log_every=1)
    for spec in study["evaluations"].values():
        spec["limit"] = LIMIT
    path = tmp_path / "mt-mini.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path, study


def test_a_miniature_mt_study_reports_the_bleu_of_its_prediction_files(stage_runs, cache_dir, tmp_path):
    from sacrebleu.metrics import BLEU, CHRF

    path, study = _miniature(tmp_path, stage_runs["zero2"])
    out = tmp_path / "runs"
    run_python([str(path), "--out", str(out)], cache_dir, script=REPO / "launch" / "study.py", timeout=900)
    run_python([str(out), "--study", str(path), "--out", str(tmp_path / "report")], cache_dir,
               script=REPO / "eval" / "report.py")
    references = {"test": load_pairs(get_task("multi30k-en-de"), "test")[1][:LIMIT],
                  "shift-newstest2014": load_pairs(get_task("wmt14-en-de"), "test")[1][:LIMIT]}
    analysis = json.loads((tmp_path / "report" / "analysis.json").read_text())
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| test BLEU | test chrF |" in report and "| set | BLEU | NLL |" in report  # BLEU first
    for variation in ("log", "hypros"):
        run = out / f"{variation}-nano-s1"
        hyps = (RunFolder(run).evaluation("test") / "predictions-clean.txt").read_text().splitlines()
        bleu = BLEU().corpus_score(hyps, [references["test"]]).score
        row = next(r for r in analysis["summary"] if r["variation"] == variation)
        assert row["bleu"][0] == pytest.approx(bleu, abs=1e-9)
        assert row["chrf"][0] == pytest.approx(CHRF().corpus_score(hyps, [references["test"]]).score, abs=1e-9)
        assert f"| nano | {row['params'] / 1e6:.2f}M | {variation} | 1 | {bleu:.4g} |" in report  # n = 1 seed
        shifted = (RunFolder(run).evaluation("shift-newstest2014") / "predictions-clean.txt").read_text().splitlines()
        assert row["shift-newstest2014:bleu"][0] == pytest.approx(
            BLEU().corpus_score(shifted, [references["shift-newstest2014"]]).score, abs=1e-9)
        swapped = (RunFolder(run).evaluation("swap-10") / "predictions-swap_0.1.txt").read_text().splitlines()
        swap_bleu = BLEU().corpus_score(swapped, [references["test"]]).score
        assert row["swap-10:bleu"][0] == pytest.approx(swap_bleu, abs=1e-9)
        if bleu:  # the relative drop is undefined at BLEU 0
            assert row["swap-10:drop"][0] == pytest.approx((bleu - swap_bleu) / bleu, abs=1e-9)
