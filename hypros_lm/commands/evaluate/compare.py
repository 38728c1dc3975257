"""A blinded side-by-side comparison page of two runs, for human raters.

    python eval/compare.py runs/ft-log runs/ft-hypros --task multi30k-en-de --split test --n 100
    # -> runs/compare/<task>-<split>/compare.html (send to raters) and key.json (keep: it unblinds)
    python eval/ratings.py ratings-*.json --key runs/compare/multi30k-en-de-test/key.json

Samples --n inputs of the task split (seeded), generates from both runs (greedy unless --beams), and writes
one self-contained HTML page: each source with the two outputs as A and B in a random order per item.
Raters pick A, B or tie (translation: also adequacy and fluency 1–5; summarization: faithfulness 1–5),
with keyboard shortcuts; ratings survive a reload and are saved as JSON by a button.
"""

import argparse
from pathlib import Path

from hypros_lm.commands.evaluate.options import add_device_options
from hypros_lm.studies.compare import build_comparison
from hypros_lm.tasks import require_family


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", help="a run folder (called run 0 once unblinded)")
    parser.add_argument("run_b", help="another run folder (run 1)")
    parser.add_argument("--task", required=True, help="a sequence-to-sequence task, e.g. multi30k-en-de or xsum")
    parser.add_argument("--split", default="test", help="the task's split the items come from")
    parser.add_argument("--n", type=int, default=100, help="items to rate")
    parser.add_argument("--seed", type=int, default=0, help="draws the items and the A/B order")
    parser.add_argument("--beams", type=int, default=1, help="1: greedy; >1: beam search")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="longest generated output, in tokens")
    parser.add_argument("--batch-size", type=int, default=16, help="sources generated together")
    add_device_options(parser)
    parser.add_argument("--out", type=Path, help="output folder (default: runs/compare/<task>-<split>)")
    args = parser.parse_args(argv)

    require_family(args.task, "seq2seq", "eval/compare.py")

    page, key = build_comparison(args.run_a, args.run_b, task_name=args.task, split=args.split, n=args.n,
                                 seed=args.seed, out=args.out or Path("runs") / "compare" / f"{args.task}-{args.split}",
                                 beams=args.beams, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                 device=args.device, precision=args.precision)
    print(f"page for raters: {page}\nunblinding key (do not send): {key}")
