"""Prepare a corpus once, outside the training job: tokenizer + token shards + manifest.

    python launch/prepare_data.py --data pile --token-budget 1e10 --vocab-size 50304 --workers 32 --out data/pile-50k
    python launch/prepare_data.py --data wikitext-103-raw-v1 --vocab-size 32768 --workers 16 --out data/wikitext103-32k
    python launch/prepare_data.py --data path/to/folder_of_jsonl --workers 4 --out data/mine
    deepspeed --hostfile hostfile launch/prepare_data.py --data pile ... --out /shared/data/pile-50k   # every node
    deepspeed launch/pretrain.py --data data/pile-50k ...                                             # then train

--data takes a hub name (offline: resolved to the local copies), or a local .txt/.jsonl/.parquet[.gz] file or
folder; an evaluation split the source lacks (a single file, a folder without validation.*) is held out
of its training split (--holdout-fraction, --holdout-min-tokens, --holdout-seed). Each split is written
as shards of --docs-per-shard documents by --workers tokenizer processes; a killed preparation continues
where it stopped when run again with the same arguments, and one process prepares a folder however many
are started on it. Under a launcher each rank prepares its share of the shards (--out on a filesystem
every node shares) and rank 0 writes the manifest. The BPE is trained on the first
--tokenizer-sample-chars characters of the training split, unless --tokenizer names one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hypros_lm.cli import run_main
from hypros_lm.data import DataSettings, PrepareSettings, prepare_corpus
from hypros_lm.data.holdout import Holdout
from hypros_lm.data.sources import canonical_split, resolve_splits
from hypros_lm.files import launcher_rank


def _count(text: str) -> int:
    """1e10 and 10_000_000_000 alike."""
    value = float(text)
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(value)


def parse(argv: list[str]) -> argparse.Namespace:
    defaults = PrepareSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="hub name, or a local file/folder of .txt/.jsonl/.parquet[.gz]")
    parser.add_argument("--out", required=True, type=Path, help="the prepared folder")
    parser.add_argument("--splits", nargs="+", default=["train", "validation"],
                        help="splits to prepare; NAME=SOURCE prepares the source's SOURCE split as NAME (train=test)")
    parser.add_argument("--text-field", default="text", help="field holding the text in .jsonl/.parquet records")
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    parser.add_argument("--tokenizer", help="a tokenizer.json (or folder) or hub tokenizer to use instead of training one")
    parser.add_argument("--tokenizer-sample-chars", type=_count, default=defaults.tokenizer_sample_chars)
    parser.add_argument("--token-budget", type=_count, help="keep this many training tokens (default: the whole split)")
    parser.add_argument("--docs-per-shard", type=_count, default=defaults.docs_per_shard)
    data_defaults = DataSettings()
    parser.add_argument("--holdout-fraction", type=float, default=data_defaults.holdout_fraction,
                        help="a source without a validation (or test) split: share of its documents held out for it")
    parser.add_argument("--holdout-min-tokens", type=int, default=data_defaults.holdout_min_tokens,
                        help="...and at least about this many tokens (at most a tenth of the documents)")
    parser.add_argument("--holdout-seed", type=int, default=data_defaults.holdout_seed)
    parser.add_argument("--workers", type=int, default=1, help="tokenizer processes (besides the reader)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # from the deepspeed launcher
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers} must be ≥ 1")
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    settings = PrepareSettings(vocab_size=args.vocab_size, tokenizer=args.tokenizer,
                               tokenizer_sample_chars=args.tokenizer_sample_chars, token_budget=args.token_budget,
                               docs_per_shard=args.docs_per_shard)
    wanted = {}
    for entry in args.splits:
        name, _, from_split = entry.partition("=")
        wanted[canonical_split(name)] = from_split or name
    holdout = Holdout(fraction=args.holdout_fraction, min_tokens=args.holdout_min_tokens, seed=args.holdout_seed)
    # every split resolves (or fails, naming what exists) before any work; missing ones are held out of train
    sources = resolve_splits(args.data, wanted, text_field=args.text_field, holdout=holdout)
    if "train" not in sources and args.tokenizer is None:
        raise ValueError("without a train split there is no text to train the BPE on; add train to --splits or give --tokenizer")
    rank, world = launcher_rank()
    log = print if rank == 0 else (lambda _msg: None)
    prepare_corpus(args.out, sources, settings, workers=args.workers, rank=rank, world=world,
                   progress=not args.no_progress, log=log)


def cli() -> None:
    """The console script's entry point."""
    run_main(main)


if __name__ == "__main__":
    cli()
