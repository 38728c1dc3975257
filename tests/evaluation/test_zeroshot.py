"""lm-evaluation-harness on the offline copies, through lm-eval's own task definitions."""

from __future__ import annotations

import gzip
import json

import pytest

from hypros_lm.data import data_dir
from hypros_lm.evaluation.zeroshot import attach_line_labels, boolq_string_labels, write_offline_tasks
from tests.helpers import REPO, run_python

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="needs the offline data folder ../shared/data")


def _json_dataset(path):
    import datasets

    return datasets.load_dataset("json", data_files={"validation": str(path)}, split="validation")


def test_piqa_labels_come_from_the_separate_file():
    ds = attach_line_labels(_json_dataset(DATA / "piqa" / "valid.jsonl"), str(DATA / "piqa" / "valid-labels.lst"))
    labels = [int(x) for x in (DATA / "piqa" / "valid-labels.lst").read_text().split()]
    assert len(ds) == 1838 and ds["label"] == labels


def test_boolq_string_labels_become_class_ids():
    ds = boolq_string_labels(_json_dataset(DATA / "boolq" / "val.jsonl.gz"))
    with gzip.open(DATA / "boolq" / "val.jsonl.gz", "rt") as f:
        truth = [json.loads(line)["label"] for line in f]
    assert ds["label"] == [1 if str(t).lower() == "true" else 0 for t in truth]


def test_generated_tasks_include_the_builtin_definitions(tmp_path):
    described = write_offline_tasks(tmp_path, ["lambada_openai", "arc_easy", "wikitext"])
    arc = (tmp_path / "arc_easy_offline.yaml").read_text()
    assert "lm_eval/tasks/arc/arc_easy.yaml" in arc and "brier_score" in arc and "dataset_path: json" in arc
    pages = [json.loads(line)["page"] for line in (tmp_path / "wikitext_test.jsonl").read_text().splitlines()]
    raw = (DATA / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    assert "".join(pages) == raw  # every line of the file, in order, in exactly one page
    assert pages[0].lstrip(" \n").startswith("= Robert Boulter = ") and len(pages) == 62
    assert set(described) == {"lambada_openai_offline", "arc_easy_offline", "wikitext_offline"}


@pytest.mark.slow
def test_zeroshot_runs_lm_eval_offline_on_a_trained_model(stage_runs, cache_dir, tmp_path):
    proc = run_python([str(stage_runs["zero2"]), "--tasks", "lambada_openai", "arc_easy", "piqa", "wikitext",
                       "--limit", "8", "--out", str(tmp_path)], cache_dir, script=REPO / "eval" / "zeroshot.py")
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"lambada_openai_offline", "arc_easy_offline", "piqa_offline", "wikitext_offline"}
    assert 0 <= results["arc_easy_offline"]["acc,none"] <= 1
    assert "brier_score,none" in results["piqa_offline"]
    assert results["lambada_openai_offline"]["perplexity,none"] > 1
    assert results["wikitext_offline"]["bits_per_byte,none"] > 0
    assert len((tmp_path / "summary.txt").read_text().splitlines()) == 4
    assert "piqa_offline" in proc.stdout


def test_unknown_task_is_a_clear_error(stage_runs, cache_dir, tmp_path):
    proc = run_python([str(stage_runs["zero2"]), "--tasks", "squad", "--out", str(tmp_path)], cache_dir,
                      script=REPO / "eval" / "zeroshot.py", check=False)
    assert proc.returncode == 2 and "task(s) ['squad'] have no offline copy" in proc.stderr
