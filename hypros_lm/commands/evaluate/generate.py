"""Generate with a fine-tuned run and score it: sacreBLEU BLEU/chrF (translation) or ROUGE (summarization),
the target-side token calibration, and robustness under perturbed sources.

    python eval/generate.py runs/ft-multi30k --split test --beams 4
    python eval/generate.py runs/ft-multi30k --task wmt14-en-de --split test --limit 500     # out of domain
    python eval/generate.py runs/ft-multi30k --perturb swap:0.05 swap:0.1 typo:0.1 prefix distractor
"""

import argparse

from hypros_lm.commands.evaluate.options import add_device_options, add_task_options
from hypros_lm.data.perturb import parse
from hypros_lm.runs import load_run
from hypros_lm.scoring.scores import score_keys
from hypros_lm.tasks import require_family
from hypros_lm.tasks.seq2seq import evaluate_task


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_options(parser, split="test", task_help="task to evaluate on (default: the run's; another one tests "
                     "domain shift)", limit_help="first N examples")
    parser.add_argument("--beams", type=int, default=1, help="1: greedy; >1: beam search")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="longest generated output, in tokens")
    parser.add_argument("--batch-size", type=int, default=16, help="sources generated together")
    parser.add_argument("--perturb", nargs="*", default=[],
                        help="perturbation specs: swap:0.05, typo:0.1, prefix, distractor; combine with +")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    add_device_options(parser)
    parser.add_argument("--out", help="output folder (default: <run>/gen-<task>-<split>)")
    args = parser.parse_args(argv)

    for spec in args.perturb:
        parse(spec)  # bad specs fail before the model loads
    if args.task:
        require_family(args.task, "seq2seq", "eval/generate.py")
    result, samples = evaluate_task(load_run(args.run_dir), task_name=args.task, split=args.split, limit=args.limit,
                                    beams=args.beams, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                    perturbations=tuple(args.perturb), seed=args.seed, out=args.out,
                                    device=args.device, precision=args.precision)
    print(f"{result['task']} on {result['data']}: {result['examples']} examples, beams={result['beams']}")
    for name in ["clean", *args.perturb]:
        scores = {k: v for k, v in result[name].items() if isinstance(v, float)}
        tt = result[name].get("target_tokens", result["target_tokens"])  # scored given this set's sources
        print(f"  {name:>20}: " + " | ".join(f"{k} {v:.4g}" for k, v in scores.items())
              + f" | target tokens: NLL {tt['loss_log']:.4f} | "
              + "".join(f"{k} {tt['loss_' + k]:.4f} | " for k in score_keys(tt)) + f"ECE(10) {tt['ece_10']:.4f}")
    if "bleu_signature" in result["clean"]:
        print(f"  sacreBLEU signatures: {result['clean']['bleu_signature']} | {result['clean']['chrf_signature']}")
    for src, ref, hyp in samples["clean"]:
        print(f"\n  source:     {src}\n  reference:  {ref}\n  prediction: {hyp}")
