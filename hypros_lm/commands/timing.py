"""An interleaved step timing of one run's settings (the study runner starts it for each model of a study with
``timing:``): log-loss and the run's objective alternated in one process; the medians and ratio as JSON.

    python -m hypros_lm.commands.timing --config runs/studies/cpu-demo/hypros-nano-s1/study-run.yaml \\
        --steps 12 --out runs/studies/cpu-demo/timing/nano.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hypros_lm.cli import run_main
from hypros_lm.config import settings_from_dict
from hypros_lm.files import read_yaml, write_atomic
from hypros_lm.training.timing import interleaved_timing


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="a run's settings (its study-run.yaml or settings.yaml)")
    parser.add_argument("--steps", type=int, default=12, help="measured steps of each objective")
    parser.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error(f"--steps {args.steps}: give at least 3 (the medians need a few steps each)")
    settings = settings_from_dict(read_yaml(args.config))
    settings.train.resume = False
    with tempfile.TemporaryDirectory(prefix="hypros-timing-") as scratch:
        result = interleaved_timing(settings, steps=args.steps, out=Path(scratch))
    write_atomic(args.out, json.dumps(result, indent=2))
    print(f"{settings.model.name}: {settings.loss.name} {result['method_s']:.4f} s/step, log-loss {result['log_s']:.4f} "
          f"s/step (medians of {args.steps} alternated steps each): ratio {result['ratio']:.3f} -> {args.out}")


if __name__ == "__main__":
    run_main(main)
