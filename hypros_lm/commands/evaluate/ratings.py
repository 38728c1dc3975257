"""Unblind and report side-by-side ratings saved from eval/compare.py's page.

    python eval/ratings.py ratings-ab12cd-ana.json ratings-ab12cd-ben.json --key runs/compare/multi30k-en-de-test/key.json

Prints (and with --out writes) win rates per rater and pooled with a two-sided binomial sign test, the
1–5 scale means, and agreement between raters (Cohen's κ per pair, Fleiss' κ) when there are several.
"""

import argparse
import json
from pathlib import Path

from hypros_lm.errors import MissingFile
from hypros_lm.studies.ratings import ratings_report, summarize


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ratings", nargs="+", type=Path, help="ratings JSON files, one per rater")
    parser.add_argument("--key", type=Path, required=True, help="the key.json written beside the page")
    parser.add_argument("--out", type=Path, help="folder for ratings.md and ratings.json")
    args = parser.parse_args(argv)
    for path in [*args.ratings, args.key]:
        if not path.is_file():
            raise MissingFile(f"no file {path}")

    summary = summarize(args.ratings, args.key)
    text = ratings_report(summary)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ratings.md").write_text(text)
        (args.out / "ratings.json").write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out / 'ratings.md'}")
