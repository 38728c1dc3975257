"""Write a study's Markdown report (criteria, tables, statistics, figures) from its run folders.

    python eval/report.py runs/studies/cpu-demo --study studies/cpu-demo.yaml --out docs/studies/cpu-demo
"""

import argparse
from pathlib import Path

from hypros_lm.studies.report import write_report
from hypros_lm.studies.spec import load_study


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the study's run folder (launch/study.py --out)")
    parser.add_argument("--study", type=Path, help="the study file (default: studies/<folder name>.yaml)")
    parser.add_argument("--out", type=Path, help="report folder (default: <folder>/report)")
    parser.add_argument("--note", default="", help="a line added under the header (e.g. how long the study took)")
    args = parser.parse_args(argv)

    study = load_study(args.study or Path("studies") / f"{args.folder.name}.yaml")
    path = write_report(study, args.folder, args.out or args.folder / "report", note=args.note)
    print(f"wrote {path}")
