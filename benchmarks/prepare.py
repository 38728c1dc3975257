"""Corpus preparation, measured side by side on one real corpus (IMDb's 25,000 test reviews by default).

    python benchmarks/prepare.py
    python benchmarks/prepare.py --data wikitext-2-v1 --split train

Every row is a fresh process (one tokenizer, trained once beforehand on the corpus, so no row pays
for BPE training), with tokenizer threading off (TOKENIZERS_PARALLELISM=false) so that the worker count
is what scales:

    old in-job path    what the training job did before launch/prepare_data.py: one process encodes
                       256 documents at a time, keeps every document's ids as int64 arrays in a list
                       and concatenates them at the end (kept here as the baseline)
    preparer, N        launch/prepare_data.py's code path with N tokenizer worker processes (1: in the
                       reading process itself)

tokens/s is the corpus's tokens over the wall-clock time of the whole preparation; peak MiB is the
largest sum of resident memory over the process and its workers, sampled every 20 ms. The last rows
prepare 25 %, 50 % and 100 % of the corpus (a token budget) with the best preparer setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mdtable import print_table

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """One measured preparation, in this process (and its workers)."""
    import numpy as np

    from hypros_lm.data import DataSettings, iter_documents, load_tokenizer, prepare_corpus, resolve_source
    from hypros_lm.data.tokenizer import eos_id

    source = resolve_source(args.data, args.split)
    tok = load_tokenizer(args.tokenizer)
    start = time.perf_counter()
    if args.mode == "old":
        eos, pieces, batch, total = eos_id(tok), [], [], 0
        for doc in iter_documents(source):
            batch.append(doc)
            if len(batch) == 256:
                for enc in tok.encode_batch(batch):
                    pieces.append(np.asarray(enc.ids + [eos], dtype=np.int64))
                batch.clear()
        for enc in tok.encode_batch(batch):
            pieces.append(np.asarray(enc.ids + [eos], dtype=np.int64))
        tokens = np.concatenate(pieces).astype(np.uint16)
        np.save(Path(args.out) / "tokens.npy", tokens)
        total, bytes_on_disk = len(tokens), tokens.nbytes
    else:
        settings = DataSettings(token_budget=args.budget, docs_per_shard=args.docs_per_shard)
        folder = prepare_corpus(Path(args.out), {"train": source}, settings, tokenizer=tok, workers=args.workers,
                                progress=False, log=lambda _m: None)
        info = json.loads((folder / "manifest.json").read_text())["splits"]["train"]
        total = info["tokens_in_shards"]
        bytes_on_disk = sum(r["bytes"] for r in info["shards"])
    print(json.dumps({"seconds": time.perf_counter() - start, "tokens": total, "bytes": bytes_on_disk}))


def measure(args: argparse.Namespace, extra: list[str]) -> dict:
    import psutil

    with tempfile.TemporaryDirectory(prefix="hypros-prepare-") as out:
        cmd = [sys.executable, __file__, "--worker", "--data", args.data, "--split", args.split, "--tokenizer",
               args.tokenizer, "--docs-per-shard", str(args.docs_per_shard), "--out", out, *extra]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.02)
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(extra)} failed:\n{stderr[-3000:]}")
        result = json.loads(stdout.strip().splitlines()[-1])
        return {**result, "peak_mb": peak / 2**20, "tokens_per_s": result["tokens"] / result["seconds"]}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="imdb")
    parser.add_argument("--split", default="test")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--docs-per-shard", type=int, default=2000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="new", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    from hypros_lm.data import iter_documents, resolve_source, save_tokenizer, train_bpe

    with tempfile.TemporaryDirectory(prefix="hypros-tok-") as tok_dir:
        source = resolve_source(args.data, args.split)
        save_tokenizer(train_bpe(iter_documents(source), args.vocab_size), Path(tok_dir))
        args.tokenizer = str(Path(tok_dir) / "tokenizer.json")
        print(f"{source.describe()}, byte-level BPE of {args.vocab_size}; {os.cpu_count()} CPU cores")
        print(f"{'setting':>26} {'tokens':>11} {'seconds':>8} {'tokens/s':>11} {'peak MiB':>9} {'bytes/token':>12}", flush=True)
        rows = {}

        def show(name: str, r: dict) -> None:
            rows[name] = r
            print(f"{name:>26} {r['tokens']:>11,} {r['seconds']:>8.2f} {r['tokens_per_s']:>11,.0f} {r['peak_mb']:>9.0f} "
                  f"{r['bytes'] / r['tokens']:>12.2f}", flush=True)

        show("old in-job path", measure(args, ["--mode", "old"]))
        for workers in (1, 2):
            show(f"preparer, {workers} worker(s)", measure(args, ["--workers", str(workers)]))
        best = max((1, 2), key=lambda w: rows[f"preparer, {w} worker(s)"]["tokens_per_s"])
        total = rows["old in-job path"]["tokens"]
        for share in (0.25, 0.5, 1.0):
            budget = ["--budget", str(int(total * share))] if share < 1 else []
            show(f"{share:.0%} of corpus, {best} worker(s)", measure(args, ["--workers", str(best), *budget]))
    one, two = rows["preparer, 1 worker(s)"], rows["preparer, 2 worker(s)"]
    peaks = [rows[f"{s:.0%} of corpus, {best} worker(s)"]["peak_mb"] for s in (0.25, 0.5, 1.0)]
    print(f"2 workers / 1 worker: {two['tokens_per_s'] / one['tokens_per_s']:.2f}x (goal ≥ 1.6); best preparer / old "
          f"path: {rows[f'preparer, {best} worker(s)']['tokens_per_s'] / rows['old in-job path']['tokens_per_s']:.2f}x "
          f"(goal ≥ 1); peak memory at 100 % / 25 % of the corpus: {peaks[2] / peaks[0]:.3f} (goal within 10 %)")
    print_table(["setting", "tokens", "tokens/s", "peak memory (all processes) MiB", "bytes/token"],
                [[name, f"{r['tokens']:,}", f"{r['tokens_per_s']:,.0f}", f"{r['peak_mb']:.0f}",
                  f"{r['bytes'] / r['tokens']:.2f}"] for name, r in rows.items()])


if __name__ == "__main__":
    main(sys.argv[1:])
