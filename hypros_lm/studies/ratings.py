"""Human side-by-side ratings (from eval/compare.py's page): unblind, win rates with a two-sided
binomial sign test per rater and pooled, 1–5 scale means, and agreement between raters.

Unblinded, each rating is a winner among the two runs of the command line (0 or 1) or a tie. The sign
test counts wins only (ties dropped, as the sign test does); the win rate of run 0 is its wins over
decided items. Agreement is on the three categories (run 0, run 1, tie) over items every rater rated:
Cohen's κ per pair of raters, Fleiss' κ over all raters, and the raw share of items with one verdict.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from hypros_lm.errors import InvalidValue

CATEGORIES = (0, 1, "tie")


def read_ratings(files: list[Path], key: dict[str, Any]) -> list[dict[str, Any]]:
    """Every complete rating of the files, unblinded: rater, item, winner (0, 1 or 'tie'), scales per run."""
    unblinded = []
    raters = set()
    for path in files:
        saved = json.loads(Path(path).read_text())
        if saved.get("page") != key["page"]:
            raise InvalidValue(f"{path} rates page {saved.get('page')!r}, but the key is for page {key['page']!r}; "
                               f"pass the key.json written beside that page")
        rater = saved.get("rater") or Path(path).stem
        if rater in raters:
            raise InvalidValue(f"{path}: rater {rater!r} appears in two files; keep one file per rater")
        raters.add(rater)
        for item, rating in saved["items"].items():
            if item not in key["items"]:
                raise InvalidValue(f"{path}: item {item!r} is not on the page the key describes")
            if rating.get("choice") not in ("A", "B", "tie"):
                continue  # not rated (yet)
            order = key["items"][item]
            winner = "tie" if rating["choice"] == "tie" else order[rating["choice"]]
            scales = {order[side]: values for side, values in rating.get("scales", {}).items()}
            unblinded.append({"rater": rater, "item": item, "winner": winner, "scales": scales})
    if not unblinded:
        raise InvalidValue(f"no ratings in {[str(f) for f in files]}")
    return unblinded


def win_rates(ratings: list[dict[str, Any]]) -> dict[str, Any]:
    """Wins of each run, ties, run 0's win rate over decided items and the two-sided sign test's p."""
    count = Counter(r["winner"] for r in ratings)
    decided = count[0] + count[1]
    p = float(stats.binomtest(count[0], decided, 0.5, alternative="two-sided").pvalue) if decided else None
    return {"items": len(ratings), "wins_0": count[0], "wins_1": count[1], "ties": count["tie"],
            "win_rate_0": count[0] / decided if decided else None, "p": p}


def scale_means(ratings: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Mean of each 1–5 scale for run 0 and run 1."""
    names = sorted({n for r in ratings for side in r["scales"].values() for n in side})
    out = {}
    for name in names:
        per_run = [[r["scales"][run][name] for r in ratings if r["scales"].get(run, {}).get(name)] for run in (0, 1)]
        out[name] = [float(np.mean(v)) if v else None for v in per_run]
    return out


def cohen_kappa(a: list, b: list) -> float:
    """Cohen's κ of two raters' categories over the same items."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[c] * cb[c] for c in CATEGORIES) / n**2
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' κ of an items × categories table of counts (every item rated by the same number of raters)."""
    table = np.asarray(table, dtype=float)
    raters = table.sum(axis=1)[0]
    share = table.sum(axis=0) / table.sum()
    per_item = ((table**2).sum(axis=1) - raters) / (raters * (raters - 1))
    p_bar, p_e = per_item.mean(), (share**2).sum()
    return 1.0 if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def agreement(ratings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Agreement over the items every rater rated; None with fewer than two raters."""
    raters = sorted({r["rater"] for r in ratings})
    if len(raters) < 2:
        return None
    verdict = {(r["rater"], r["item"]): r["winner"] for r in ratings}
    common = sorted(set.intersection(*({i for (rr, i) in verdict if rr == rater} for rater in raters)))
    if not common:
        return {"raters": raters, "items": 0}
    pairs = {f"{a} / {b}": cohen_kappa([verdict[(a, i)] for i in common], [verdict[(b, i)] for i in common])
             for a, b in itertools.combinations(raters, 2)}
    table = np.array([[sum(verdict[(r, i)] == c for r in raters) for c in CATEGORIES] for i in common])
    unanimous = float(np.mean(table.max(axis=1) == len(raters)))
    return {"raters": raters, "items": len(common), "cohen_kappa": pairs, "fleiss_kappa": fleiss_kappa(table),
            "unanimous": unanimous}


def summarize(files: list[Path], key_file: Path) -> dict[str, Any]:
    key = json.loads(Path(key_file).read_text())
    ratings = read_ratings(files, key)
    raters = sorted({r["rater"] for r in ratings})
    return {"runs": key["runs"], "task": key.get("task"), "page": key["page"], "pooled": win_rates(ratings),
            "per_rater": {name: win_rates([r for r in ratings if r["rater"] == name]) for name in raters},
            "scales": scale_means(ratings),
            "scales_per_rater": {name: scale_means([r for r in ratings if r["rater"] == name]) for name in raters},
            "agreement": agreement(ratings)}


def ratings_report(summary: dict[str, Any]) -> str:
    """Markdown: win rates (per rater and pooled) with the sign test, scale means, agreement."""
    run0, run1 = summary["runs"]
    lines = [f"# Side-by-side ratings: `{run0}` (run 0) vs `{run1}` (run 1)", "",
             f"Task {summary['task']}, page {summary['page']}. Win rate = run 0's wins over decided items (ties "
             f"excluded); p = two-sided binomial sign test of wins against 1/2.", "",
             "| rater | items | run 0 wins | run 1 wins | ties | run 0 win rate | p |", "|---|---|---|---|---|---|---|"]
    rows = [*summary["per_rater"].items(), ("**pooled**", summary["pooled"])]
    for name, w in rows:
        rate = f"{w['win_rate_0']:.3f}" if w["win_rate_0"] is not None else "—"
        p = f"{w['p']:.3g}" if w["p"] is not None else "—"
        lines.append(f"| {name} | {w['items']} | {w['wins_0']} | {w['wins_1']} | {w['ties']} | {rate} | {p} |")
    if summary["scales"]:
        lines += ["", "| scale (1–5, mean) | run 0 | run 1 |", "|---|---|---|"]
        for name, (a, b) in summary["scales"].items():
            lines.append(f"| {name} | {_num(a)} | {_num(b)} |")
    agree = summary["agreement"]
    if agree is None:
        lines += ["", "One rater: agreement between raters not computed."]
    elif agree["items"] == 0:
        lines += ["", f"Raters {', '.join(agree['raters'])} share no rated item: agreement not computed."]
    else:
        lines += ["", f"Agreement over the {agree['items']} items all {len(agree['raters'])} raters rated "
                      f"(categories run 0 / run 1 / tie): Fleiss' κ {agree['fleiss_kappa']:.3f}, unanimous "
                      f"{agree['unanimous'] * 100:.0f} %; Cohen's κ " +
                  ", ".join(f"{pair} {k:.3f}" for pair, k in agree["cohen_kappa"].items()) + "."]
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "—"
