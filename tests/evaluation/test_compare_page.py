"""The side-by-side rating page in a real headless Chromium (Debian's chromium + chromium-driver, via
Selenium): built by eval/compare.py from two real runs on real Multi30k sources, opened from a file,
rated by a scripted rater with mouse and keyboard, reloaded midway, saved as JSON, ingested."""

from __future__ import annotations

import json
import time

import pytest

from hypros_lm.studies.ratings import summarize
from tests.helpers import REPO, headless_chromium, run_python

pytestmark = pytest.mark.slow
N = 6
PLAN = ["A", "B", "tie", "B", "A", "tie"]  # the scripted rater's choice per item, by position on the page


def _browser(download_dir):
    return headless_chromium(download_dir)


def _rate(browser, position: int, by_mouse: bool) -> None:
    """Rate the shown item: adequacy/fluency of A and B, then the choice (which moves to the next item)."""
    from selenium.webdriver.common.by import By

    choice, scores = PLAN[position], [1 + (position + k) % 5 for k in range(4)]
    slots = [("A", "adequacy"), ("A", "fluency"), ("B", "adequacy"), ("B", "fluency")]
    body = browser.find_element(By.TAG_NAME, "body")
    for (side, name), score in zip(slots, scores, strict=True):
        if by_mouse:
            browser.find_element(By.ID, f"scale-{side}-{name}-{score}").click()
        else:
            body.send_keys(str(score))  # fills the highlighted (first empty) scale
    if by_mouse:
        browser.find_element(By.ID, f"choose-{choice}").click()
    else:
        body.send_keys({"A": "a", "B": "b", "tie": "t"}[choice])


def _text(browser, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id).text


def test_rating_page_in_headless_chromium(stage_runs, cache_dir, tmp_path):
    out = tmp_path / "compare"
    run_python([str(stage_runs["zero0"]), str(stage_runs["zero2"]), "--task", "multi30k-en-de", "--split", "test",
                "--n", str(N), "--max-new-tokens", "8", "--out", str(out)], cache_dir, script=REPO / "eval" / "compare.py")
    key = json.loads((out / "key.json").read_text())
    assert len(key["items"]) == N and key["runs"] == [str(stage_runs["zero0"]), str(stage_runs["zero2"])]
    html = (out / "compare.html").read_text()
    assert str(stage_runs["zero0"]) not in html and str(stage_runs["zero2"]) not in html  # blinded

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = _browser(downloads)
    try:
        from selenium.webdriver.common.by import By

        browser.get((out / "compare.html").as_uri())
        assert _text(browser, "progress-text") == f"0 / {N} rated"
        browser.find_element(By.ID, "rater").send_keys("scripted rater")
        seen = []
        for position in range(N):
            assert _text(browser, "position") == f"Item {position + 1} of {N}"
            seen.append(_text(browser, "source"))
            _rate(browser, position, by_mouse=position % 2 == 0)
            if position == 2:  # a reload midway loses nothing
                browser.refresh()
                assert _text(browser, "progress-text") == f"3 / {N} rated"
                assert _text(browser, "position") == f"Item 4 of {N}"
                assert browser.find_element(By.ID, "rater").get_attribute("value") == "scripted rater"
        assert _text(browser, "progress-text") == f"{N} / {N} rated"
        browser.find_element(By.ID, "prev").click()  # the last item's ratings show again when revisited
        assert "on" in browser.find_element(By.ID, f"choose-{PLAN[N - 2]}").get_attribute("class")
        browser.find_element(By.ID, "save").click()
        deadline = time.time() + 20
        while not list(downloads.glob("ratings-*.json")) and time.time() < deadline:
            time.sleep(0.2)
        saved = list(downloads.glob("ratings-*.json"))
        assert len(saved) == 1, "the Save button wrote no file"
    finally:
        browser.quit()

    ratings = json.loads(saved[0].read_text())
    assert ratings["rater"] == "scripted rater" and ratings["rated"] == N and ratings["page"] == key["page"]
    from hypros_lm.tasks.seq2seq import get_task, load_pairs

    sources = load_pairs(get_task("multi30k-en-de"), "test")[0]
    order = list(key["items"])  # page order = key order
    assert seen == [" ".join(sources[key["items"][i]["index"]].split()) for i in order]  # real sources, in order
    for position, item in enumerate(order):
        got = ratings["items"][item]
        assert got["choice"] == PLAN[position]
        assert [got["scales"]["A"]["adequacy"], got["scales"]["A"]["fluency"], got["scales"]["B"]["adequacy"],
                got["scales"]["B"]["fluency"]] == [1 + (position + k) % 5 for k in range(4)]
    # unblinded by the key: run 0 wins where the plan picked the side it was shown on
    wins = [key["items"][item][PLAN[p]] for p, item in enumerate(order) if PLAN[p] != "tie"]
    summary = summarize(saved, out / "key.json")
    pooled = summary["pooled"]
    assert (pooled["wins_0"], pooled["wins_1"], pooled["ties"]) == (wins.count(0), wins.count(1), PLAN.count("tie"))
    run_python([str(saved[0]), "--key", str(out / "key.json"), "--out", str(tmp_path / "report")], cache_dir,
               script=REPO / "eval" / "ratings.py")
    report = (tmp_path / "report" / "ratings.md").read_text()
    assert "| **pooled** | 6 |" in report and "One rater" in report
    assert json.loads((tmp_path / "report" / "ratings.json").read_text())["pooled"] == pooled
