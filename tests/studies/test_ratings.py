"""Ratings ingestion: unblinding, win rates against hand counts and scipy's binomial test, agreement
against scikit-learn's Cohen's κ and Fleiss' κ computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from hypros_lm.studies.compare import Item, blind, write_page
from hypros_lm.studies.ratings import fleiss_kappa, ratings_report, summarize

# item → which run (0/1) the page shows as A (B is the other)
ORDER = {"i0": 0, "i1": 1, "i2": 0, "i3": 1, "i4": 1, "i5": 0}
KEY = {"page": "p1", "runs": ["runs/log", "runs/hypros"], "task": "multi30k-en-de",
       "items": {i: {"A": a, "B": 1 - a, "index": k} for k, (i, a) in enumerate(ORDER.items())}}


def _write(tmp_path, rater: str, choices: dict[str, str], scales=None) -> object:
    items = {i: {"choice": c, "scales": (scales or {}).get(i, {"A": {}, "B": {}})} for i, c in choices.items()}
    path = tmp_path / f"ratings-{rater}.json"
    path.write_text(json.dumps({"page": "p1", "rater": rater, "items": items}))
    return path


def test_win_rates_and_sign_test_against_hand_counts(tmp_path):
    key = tmp_path / "key.json"
    key.write_text(json.dumps(KEY))
    ana = {"i0": "A", "i1": "A", "i2": "B", "i3": "B", "i4": "A", "i5": "tie"}
    #      run:  0     1     1     0     1     tie   → ana: run 0 wins 2, run 1 wins 3, 1 tie
    ben = {"i0": "A", "i1": "B", "i2": "A", "i3": "A", "i4": "A", "i5": "A"}
    #      run:  0     0     0     1     1     0     → ben: run 0 wins 4, run 1 wins 2
    scales = {"i0": {"A": {"adequacy": 4}, "B": {"adequacy": 2}}, "i1": {"A": {"adequacy": 5}, "B": {"adequacy": 3}}}
    files = [_write(tmp_path, "ana", ana, scales), _write(tmp_path, "ben", ben)]
    s = summarize(files, key)
    assert (s["per_rater"]["ana"]["wins_0"], s["per_rater"]["ana"]["wins_1"], s["per_rater"]["ana"]["ties"]) == (2, 3, 1)
    assert (s["per_rater"]["ben"]["wins_0"], s["per_rater"]["ben"]["wins_1"], s["per_rater"]["ben"]["ties"]) == (4, 2, 0)
    pooled = s["pooled"]
    assert (pooled["wins_0"], pooled["wins_1"], pooled["ties"], pooled["items"]) == (6, 5, 1, 12)
    assert pooled["win_rate_0"] == pytest.approx(6 / 11)
    assert pooled["p"] == pytest.approx(stats.binomtest(6, 11, 0.5).pvalue)
    assert s["per_rater"]["ben"]["p"] == pytest.approx(stats.binomtest(4, 6, 0.5).pvalue)
    # i0: run 0 was A (4), run 1 was B (2); i1: run 1 was A (5), run 0 was B (3)
    assert s["scales"]["adequacy"] == [pytest.approx(3.5), pytest.approx(3.5)]
    ana_runs = [0, 1, 1, 0, 1, "tie"]
    ben_runs = [0, 0, 0, 1, 1, 0]
    agree = s["agreement"]
    assert agree["items"] == 6
    assert agree["cohen_kappa"]["ana / ben"] == pytest.approx(
        cohen_kappa_score([str(x) for x in ana_runs], [str(x) for x in ben_runs]))
    assert agree["unanimous"] == pytest.approx(2 / 6)
    report = ratings_report(s)
    assert "| **pooled** | 12 | 6 | 5 | 1 | 0.545 |" in report and "Fleiss' κ" in report


def test_fleiss_kappa_by_hand():
    # 4 items × 3 categories, 3 raters each
    table = np.array([[3, 0, 0], [0, 3, 0], [2, 1, 0], [1, 1, 1]])
    p_j = table.sum(0) / 12  # [0.5, 0.4167, 0.0833]
    p_i = [(9 - 3) / 6, (9 - 3) / 6, (4 + 1 - 3) / 6, (1 + 1 + 1 - 3) / 6]
    p_bar, p_e = np.mean(p_i), np.sum(p_j**2)
    assert fleiss_kappa(table) == pytest.approx((p_bar - p_e) / (1 - p_e))


def test_ratings_of_another_page_or_twice_the_same_rater_are_refused(tmp_path):
    key = tmp_path / "key.json"
    key.write_text(json.dumps(KEY))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"page": "zz", "rater": "x", "items": {}}))
    with pytest.raises(ValueError, match="rates page 'zz', but the key is for page 'p1'"):
        summarize([other], key)
    a = _write(tmp_path, "ana", {"i0": "A"})
    with pytest.raises(ValueError, match="rater 'ana' appears in two files"):
        summarize([a, a], key)


def test_blinding_is_seeded_and_the_page_holds_no_key(tmp_path):
    items = [Item(f"x{i}", i, f"source {i}", f"reference {i}", (f"first {i}", f"second {i}")) for i in range(40)]
    shown, key = blind(items, seed=3)
    assert (shown, key) == blind(items, seed=3)
    assert 5 < sum(k["A"] == 1 for k in key.values()) < 35  # both orders occur
    for s, item in zip(shown, items, strict=True):
        assert s["A"] == item.outputs[key[item.id]["A"]] and s["B"] == item.outputs[key[item.id]["B"]]
    page, key_file = write_page(items, tmp_path, title="t <x>", kind="translation", runs=("runs/secret-a", "runs/secret-b"),
                                seed=3, about={})
    html = page.read_text()
    assert "secret" not in html and '"A": 0' not in html and "t &lt;x&gt;" in html
    assert json.loads(key_file.read_text())["runs"] == ["runs/secret-a", "runs/secret-b"]
