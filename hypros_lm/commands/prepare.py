"""Prepare a corpus once, outside the training job: tokenizer + token shards + manifest.

    python launch/prepare_data.py --data pile --data.token_budget 1e10 --data.vocab_size 50304 --workers 32 --out data/pile-50k
    python launch/prepare_data.py --data wikitext-103-raw-v1 --data.vocab_size 32768 --workers 16 --out data/wikitext103-32k
    python launch/prepare_data.py --data path/to/folder_of_jsonl --workers 4 --out data/mine
    deepspeed --hostfile hostfile launch/prepare_data.py --data pile ... --out /shared/data/pile-50k   # every node
    deepspeed launch/pretrain.py --data data/pile-50k ...                                             # then train

--data takes a hub name (offline: resolved to the local copies), or a local .txt/.jsonl/.parquet[.gz] file or
folder; an evaluation split the source lacks (a single file, a folder without validation.*) is held out
of its training split (--data.holdout_fraction, --data.holdout_min_tokens, --data.holdout_seed). Each split is
written as shards of --data.docs_per_shard documents by --workers tokenizer processes; a killed preparation continues
where it stopped when run again with the same arguments, and one process prepares a folder however many
are started on it. Under a launcher each rank prepares its share of the shards (--out on a filesystem
every node shares) and rank 0 writes the manifest. The BPE is trained on the first
--data.tokenizer_sample_chars characters of the training split, unless --data.tokenizer names one.

The data settings are training's (``--data.*``, the same names and checks): train on the folder with
``--data <out>`` and the same vocabulary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hypros_lm.cli import run_main
from hypros_lm.config import load_data_settings
from hypros_lm.data import DataSettings, prepare_corpus
from hypros_lm.data.holdout import Holdout
from hypros_lm.data.settings import PREPARE_SETTINGS
from hypros_lm.data.sources import canonical_split, resolve_splits
from hypros_lm.errors import InvalidValue
from hypros_lm.files import launcher_rank
from hypros_lm.settings_docs import settings_help

RENAMED = {"--vocab-size": "data.vocab_size", "--tokenizer": "data.tokenizer", "--text-field": "data.text_field",
           "--tokenizer-sample-chars": "data.tokenizer_sample_chars", "--token-budget": "data.token_budget",
           "--docs-per-shard": "data.docs_per_shard", "--holdout-fraction": "data.holdout_fraction",
           "--holdout-min-tokens": "data.holdout_min_tokens", "--holdout-seed": "data.holdout_seed"}
"""The flags of 0.1, named in the error that says what they are now."""
KEYS = [f"data.{name}" for name in PREPARE_SETTINGS]


def parse(argv: list[str]) -> tuple[argparse.Namespace, DataSettings]:
    """The command's own options, and the data settings (``--data.*``, the rest of ``argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=settings_help(KEYS))
    parser.add_argument("--out", required=True, type=Path, help="the prepared folder")
    parser.add_argument("--splits", nargs="+", default=["train", "validation"],
                        help="splits to prepare; NAME=SOURCE prepares the source's SOURCE split as NAME (train=test)")
    parser.add_argument("--workers", type=int, default=1, help="tokenizer processes (besides the reader)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs and batch jobs)")
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # from the deepspeed launcher
    args, rest = parser.parse_known_args(argv)
    for arg in rest:
        if arg.split("=")[0] in RENAMED:
            parser.error(f"{arg.split('=')[0]} is now --{RENAMED[arg.split('=')[0]]}, the name training uses")
    if args.workers < 1:
        parser.error(f"--workers {args.workers} must be ≥ 1")
    data = load_data_settings(rest, keys=KEYS)
    if not any(a == "--data" or a.startswith(("--data=", "--data.name")) for a in rest):
        parser.error("--data is required: a hub name, or a local file/folder of .txt/.jsonl/.parquet[.gz]")
    return args, data


def main(argv: list[str]) -> None:
    args, data = parse(argv)
    wanted = {}
    for entry in args.splits:
        name, _, from_split = entry.partition("=")
        wanted[canonical_split(name)] = from_split or name
    holdout = Holdout(fraction=data.holdout_fraction, min_tokens=data.holdout_min_tokens, seed=data.holdout_seed)
    # every split resolves (or fails, naming what exists) before any work; missing ones are held out of train
    sources = resolve_splits(data.name, wanted, text_field=data.text_field, holdout=holdout)
    if "train" not in sources and data.tokenizer is None:
        raise InvalidValue("without a train split there is no text to train the BPE on; add train to --splits or "
                           "give --data.tokenizer")
    rank, world = launcher_rank()
    log = print if rank == 0 else (lambda _msg: None)
    prepare_corpus(args.out, sources, data, workers=args.workers, rank=rank, world=world,
                   progress=not args.no_progress, log=log)


def cli() -> None:
    """The console script's entry point."""
    run_main(main)


if __name__ == "__main__":
    cli()
