"""Evaluate a fine-tuned classifier: accuracy, macro-F1, Brier, gold-label NLL, ECE (10/15 bins), reliability
diagram and per-example predictions; robustness under word swaps and the sentiment trigger; domain shift.

    python eval/classify.py runs/cls-sst2                                   # its task's validation (SST-2 dev)
    python eval/classify.py runs/cls-sst2 --perturb swap:0.05 swap:0.1 trigger:prefix trigger:suffix
    python eval/classify.py runs/cls-sst2 --task imdb --split test --limit 2000   # domain shift (seeded sample)

Writes <out>/<set>/{metrics.json,predictions.jsonl,reliability.png} per set and <out>/summary.json with the
relative degradation of each perturbed set against the clean one.
"""

import argparse
import json
from pathlib import Path

from hypros_lm.commands.evaluate.options import add_device_options, add_task_options
from hypros_lm.data.perturb import parse
from hypros_lm.errors import InvalidValue
from hypros_lm.runs import load_run
from hypros_lm.tasks import require_family
from hypros_lm.tasks.classification import evaluate_classifier, relative_degradation


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_options(parser, split="validation", task_help="classification task (default: the run's; imdb for "
                     "domain shift)", limit_help="a seeded sample of this many examples")
    parser.add_argument("--perturb", nargs="*", default=[], help="swap:0.05, swap:0.1, trigger:prefix, trigger:suffix, ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled examples and the perturbations")
    add_device_options(parser)
    parser.add_argument("--out", type=Path, help="default: <run>/cls-<task>-<split>")
    args = parser.parse_args(argv)

    for spec in args.perturb:
        parse(spec)  # bad specs fail before the model loads

    if args.task:
        require_family(args.task, "classification", "eval/classify.py")
    loaded = load_run(args.run_dir)
    task = args.task or loaded.settings.task.name
    if task is None:
        raise InvalidValue(f"{args.run_dir} is a pretraining run: pass --task (sst2, ag_news, imdb)")
    require_family(task, "classification", "eval/classify.py")
    out = args.out or Path(args.run_dir) / f"cls-{task}-{args.split}"
    results = {}
    for spec in [None, *args.perturb]:
        name = spec or "clean"
        results[name] = evaluate_classifier(loaded, task_name=task, split=args.split, limit=args.limit, perturb=spec,
                                            seed=args.seed, out=out / name.replace(":", "_"), label=name,
                                            device=args.device, precision=args.precision)
        m = results[name]
        print(f"{name:>16}: accuracy {m['class_accuracy']:.4f} | macro-F1 {m['macro_f1']:.4f} | Brier {m['class_brier']:.4f} "
              f"| NLL {m['class_nll']:.4f} | ECE {m['class_ece_10']:.4f} ({m['examples']} examples)")
    summary = {name: {k: v for k, v in m.items() if k != "class_reliability_10"} for name, m in results.items()}
    for spec in args.perturb:
        summary[spec]["relative_degradation"] = relative_degradation(results["clean"], results[spec])
        print(f"  {spec}: relative accuracy drop {summary[spec]['relative_degradation']['class_accuracy'] * 100:.1f} %")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"data: {results['clean']['data']}\nwrote {out}")
