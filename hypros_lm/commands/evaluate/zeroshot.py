"""Zero-shot evaluation with lm-evaluation-harness (its own prompts and metrics) on a run or an HF folder.

    python eval/zeroshot.py runs/cpu-demo --tasks lambada_openai arc_easy piqa wikitext --limit 200
    python eval/zeroshot.py --hf-dir runs/cpu-demo/hf --tasks hellaswag winogrande boolq

Offline (HF_DATASETS_OFFLINE=1, or a data folder present), tasks run on the real copies in the data
folder through generated task files that include lm-eval's built-in ones. Writes lm-eval's results
JSON and a one-line-per-task summary into --out.
"""

import argparse
import json
from pathlib import Path

from hypros_lm.commands.evaluate.options import add_device_options, add_model_source, parse_model_source
from hypros_lm.errors import InvalidValue
from hypros_lm.evaluation.device import choose_device
from hypros_lm.evaluation.zeroshot import OFFLINE_TASKS, resolve_tasks, summary_lines
from hypros_lm.runs import load_run, to_hf


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_source(parser, run_help="a training run folder (its latest checkpoint)")
    parser.add_argument("--tasks", nargs="+", default=["lambada_openai", "arc_easy", "piqa", "wikitext"],
                        help="lm-eval task names (offline copies where there are)")
    parser.add_argument("--limit", type=int, help="examples per task (for quick runs); reported in the results")
    parser.add_argument("--batch-size", type=int, default=8, help="requests scored together")
    add_device_options(parser)
    parser.add_argument("--out", help="output folder (default: <run>/zeroshot)")
    args = parse_model_source(parser, argv)

    out = Path(args.out or Path(args.run_dir or args.hf_dir) / "zeroshot")
    tasks, described = resolve_tasks(args.tasks, out / "tasks")  # fails on unknown names before loading a model

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    if args.hf_dir:
        device, dtype = choose_device(args.device, precision=args.precision)
        lm = HFLM(pretrained=args.hf_dir, batch_size=args.batch_size, device=str(device),
                  dtype=str(dtype).removeprefix("torch."))
    else:
        run = load_run(args.run_dir)
        device, dtype = choose_device(args.device, run_precision=run.settings.train.precision, precision=args.precision)
        hf, tokenizer = to_hf(run)
        lm = HFLM(pretrained=hf.to(device=device, dtype=dtype), tokenizer=tokenizer, batch_size=args.batch_size,
                  device=str(device))
    manager = TaskManager(include_path=str(out / "tasks")) if (out / "tasks").is_dir() else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise InvalidValue(f"lm-eval knows no task {unknown}; offline copies exist for {sorted(OFFLINE_TASKS)}")
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=args.limit,
                                      bootstrap_iters=200, log_samples=False)
    results["hypros_data_sources"] = described
    results["hypros_limit"] = args.limit
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lines = summary_lines(results, described)
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'results.json'} and {out / 'summary.txt'}" + (f" (limit {args.limit} per task)" if args.limit else ""))
