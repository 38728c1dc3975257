"""Run a study's matrix here, one run after another (skipping finished runs, resuming interrupted
ones), or print one deepspeed command per run for a cluster scheduler.

    python launch/study.py studies/cpu-demo.yaml                      # -> runs/studies/cpu-demo/<variation>-<model>-s<seed>
    python launch/study.py studies/exp1-core.yaml --print-commands --hostfile hostfile
    python launch/study.py studies/cpu-demo.yaml --only hypros --models nano
    python launch/study.py studies/scaling-gpu.yaml --plan --gpu A100 --mfu 0.4   # sizes, FLOPs, GPU-hours; no training
"""

import argparse
import shlex
from pathlib import Path

from hypros_lm.cli import run_main
from hypros_lm.errors import InvalidValue
from hypros_lm.studies.plan import plan_lines, planned, why_no_law
from hypros_lm.studies.runner import deepspeed_command, run_study, write_run_config
from hypros_lm.studies.spec import expand, load_study


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="a study YAML (studies/*.yaml)")
    parser.add_argument("--out", help="study folder (default: runs/studies/<name>)")
    parser.add_argument("--ranks", type=int, help="ranks per run on this machine (default: the study's)")
    parser.add_argument("--only", nargs="+", help="run only these variations")
    parser.add_argument("--models", nargs="+", help="run only these model sizes")
    parser.add_argument("--print-commands", action="store_true", help="print one deepspeed command per run and exit")
    parser.add_argument("--hostfile", help="with --print-commands: a DeepSpeed hostfile for multi-node runs")
    parser.add_argument("--plan", action="store_true", help="print each run's size, tokens, FLOPs and GPU-hours, and "
                        "whether a scaling study can identify a law; train nothing (exit 2 where it cannot)")
    parser.add_argument("--gpu", default="A100", help="with --plan: the GPU whose peak the GPU-hours assume")
    parser.add_argument("--mfu", type=float, default=0.4, help="with --plan: the model-FLOPs utilisation assumed")
    args = parser.parse_args(argv)

    study = load_study(args.study)
    out = Path(args.out or Path("runs") / "studies" / study.name)
    runs = expand(study, out)  # every run's settings are checked here, before anything starts
    for flag, attr in ((args.only, "variation"), (args.models, "model")):
        if flag:
            unknown = set(flag) - {getattr(r, attr) for r in runs}
            if unknown:
                raise InvalidValue(f"--{'only' if attr == 'variation' else 'models'} {sorted(unknown)}: not in the study")
            runs = [r for r in runs if getattr(r, attr) in flag]
    ranks = args.ranks or study.ranks
    if args.plan:
        plan = planned(study, runs, gpu=args.gpu, mfu=args.mfu)
        print("\n".join(plan_lines(study, plan, gpu=args.gpu, mfu=args.mfu)))
        if study.scaling is not None and study.compares_method:  # a sweep fits no law
            if len(study.models) == 1:
                print(f"one size ({study.models[0]}): a check of one budget, compared per size; no law is fitted")
            elif reason := why_no_law(study, plan):
                raise InvalidValue(f"{args.study}: this design cannot identify a scaling law: {reason}")
            else:
                print("the design can identify a law (sizes, decades and seeds as the project's rule asks)")
        return
    if args.print_commands:
        for run in runs:
            write_run_config(study, run)
            print(shlex.join(deepspeed_command(study, run, ranks=ranks, hostfile=args.hostfile)))
        return
    run_study(study, runs, ranks=ranks)


def cli() -> None:
    """The console script's entry point."""
    run_main(main)


if __name__ == "__main__":
    cli()
