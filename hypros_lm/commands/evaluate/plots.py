"""Figures from run folders: learning curves (steps and wall-clock), λ and gradient norms, and the
reliability diagrams and entropy histograms of their evaluations (eval/lm.py), overlaid per run.

    python eval/plots.py runs/log runs/hypros runs/brier --out docs/figures
"""

import argparse
import json
from pathlib import Path

from hypros_lm.evaluation.figures import lambda_and_grad_norms, learning_curves, reliability_diagram, run_label
from hypros_lm.runs import EVALUATION_FILE, RunFolder


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders to draw together")
    parser.add_argument("--out", type=Path, required=True, help="folder the figures are written to")
    parser.add_argument("--eval-split", default="test", help="which eval-<split>/metrics.json to overlay")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    written = [*learning_curves(args.run_dirs, args.out), lambda_and_grad_norms(args.run_dirs, args.out)]
    tables = {}
    for run in args.run_dirs:
        metrics = RunFolder(run).evaluation(args.eval_split) / EVALUATION_FILE
        if metrics.is_file():
            tables[run_label(run)] = json.loads(metrics.read_text())["reliability_10"]
    if tables:
        written.append(reliability_diagram(tables, args.out, name=f"reliability_{args.eval_split}.png"))
    for path in written:
        print(f"wrote {path}")
