"""Corpus preparation, once and outside the training job: text → tokenizer + token shards + manifest (the
writer; hypros_lm.data.shards reads what it writes).

A prepared folder::

    manifest.json                 format version, sources, tokenizer hash, settings; per split its shards and totals
    tokenizer.json
    prepare.json                  the settings of a preparation in progress (a resumed one must match them)
    <split>/shard_000000.bin      raw token ids (uint16 when the vocabulary fits, else uint32): documents
                                  [k·D, (k+1)·D) of the split, each followed by the end-of-text id
    <split>/shard_000000.json     the shard's record (tokens, documents, bytes, sha256, largest id),
                                  written after the .bin is in place

Shards are units of D documents (``docs_per_shard``), so what a shard holds depends on the source and the
tokenizer only: not on how many worker processes or ranks wrote it. One reader process streams the
documents and hands sub-batches to worker processes, at most a few per worker at a time, and writes each
shard in order, aside and then renamed, with its record last: memory stays bounded whatever the corpus
size, a shard that looks finished is finished, and a preparation killed at any point resumes at the first
shard without a record. Under a launcher (several ranks, on a filesystem they share) rank r prepares the
shards k ≡ r (mod world) and rank 0 writes the manifest once every rank's done-file is there: ranks wait
on files, never on a collective with a timeout.

A token budget keeps the shards in order until their tokens reach it; the corpus is their concatenation
cut at the budget (``tokens`` in the manifest). Shards past it (work in flight when it was reached) are removed.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer

from hypros_lm.data.settings import DataSettings
from hypros_lm.data.shard_writer import finished_shards, prepare_split, shard_name, token_dtype, write_json_atomic
from hypros_lm.data.shards import FORMAT_VERSION, MANIFEST
from hypros_lm.data.sources import TextSource, iter_documents
from hypros_lm.data.tokenizer import eos_id, load_tokenizer, save_tokenizer, tokenizer_hash, train_bpe
from hypros_lm.errors import FileInTheWay, InvalidValue
from hypros_lm.files import ensure_writable, run_once, wait_for

# ---------------------------------------------------------------- the whole preparation


def _preparation_id(sources: dict[str, TextSource], settings: DataSettings, tokenizer: Tokenizer | None) -> dict:
    """What determines the prepared corpus: a resumed preparation must have the same."""
    return {"format_version": FORMAT_VERSION, "sources": {split: s.identity() for split, s in sources.items()},
            "settings": settings.preparation(), "given_tokenizer": tokenizer_hash(tokenizer) if tokenizer else None}




def prepare_corpus(out: Path, sources: dict[str, TextSource], settings: DataSettings, *,
                   tokenizer: Tokenizer | None = None, workers: int = 1, rank: int = 0, world: int = 1,
                   progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Prepare (or resume, or find already prepared) every split of ``sources`` into ``out``.

    ``sources`` maps split names to sources; the token budget applies to ``train``. ``tokenizer`` (an
    object) overrides ``settings.tokenizer``. With several ranks, ``out`` must be on a filesystem they share;
    a single process claims ``out`` first (files.run_once), so that of several processes started on it (one
    per node sharing a cache) exactly one prepares and the others wait for its manifest.
    """
    out = Path(out)
    ident = _preparation_id(sources, settings, tokenizer)
    if _already_prepared(out, ident, log):
        return out
    ensure_writable(out, "--out")
    _check_budget_fits(sources, settings)

    def prepare() -> None:
        _prepare(out, sources, settings, ident, tokenizer=tokenizer, workers=workers, rank=rank, world=world,
                 progress=progress, log=log)

    if world > 1:  # the ranks of one launch share the work through their files
        prepare()
    elif not run_once(out / MANIFEST, prepare, what=f"another process preparing {out}", log=log):
        _already_prepared(out, ident, log)  # prepared meanwhile by another process (another node): the same?
    return out


def _already_prepared(out: Path, ident: dict, log: Callable[[str], None]) -> bool:
    """Whether ``out`` holds this preparation, finished (said so); another preparation there is an error."""
    manifest_file = out / MANIFEST
    if not manifest_file.is_file():
        return False
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("preparation") != ident:
        raise FileInTheWay(f"--out {out} already holds a prepared corpus of other sources or settings; "
                           f"choose another --out (nothing was overwritten)")
    log(f"data: {out} is already prepared (" + ", ".join(
        f"{split} {info['tokens']:,} tokens" for split, info in manifest["splits"].items()) + ")")
    return True


def _prepare(out: Path, sources: dict[str, TextSource], settings: DataSettings, ident: dict, *,
             tokenizer: Tokenizer | None, workers: int, rank: int, world: int, progress: bool,
             log: Callable[[str], None]) -> None:
    """The preparation itself (resuming what a killed one left): tokenizer, every split's shards, manifest."""
    _claim(out, ident, rank, world, log)
    tok = _tokenizer_for(out, sources, settings, tokenizer, rank, log)
    start = time.time()
    for split, source in sources.items():
        log(f"data: preparing {source.describe()} -> {out / split}"
            + (f" ({workers} workers)" if workers > 1 else "") + (f", rank {rank} of {world}" if world > 1 else ""))
        prepare_split(source, out / split, tok, docs_per_shard=settings.docs_per_shard,
                      token_budget=settings.token_budget if split == "train" else None, workers=workers,
                      rank=rank, world=world, progress=progress and rank == 0, label=split)
    ranks_dir = out / ".ranks"
    write_json_atomic(ranks_dir / f"rank{rank}.done", {"rank": rank, "seconds": time.time() - start})
    if rank == 0:
        for r in range(world):
            wait_for(ranks_dir / f"rank{r}.done", f"rank {r} to finish its shards", log=log)
        _write_manifest(out, sources, settings, ident, tok)
        shutil.rmtree(ranks_dir, ignore_errors=True)
        log(f"data: prepared {out} in {time.time() - start:.1f}s")
    else:
        wait_for(out / MANIFEST, "rank 0 to write the manifest", log=log)


def _check_budget_fits(sources: dict[str, TextSource], settings: DataSettings) -> None:
    """A plain local file cannot hold more tokens than bytes plus one end-of-text per line: say so before any work."""
    src = sources.get("train")
    if settings.token_budget is None or src is None or src.path is None or src.path.suffix == ".gz":
        return
    size = src.path.stat().st_size
    if settings.token_budget > 2 * size:
        raise InvalidValue(f"data.token_budget={settings.token_budget:,} is larger than the source can hold: "
                           f"{src.describe()} has {size:,} bytes (at most ~{2 * size:,} tokens); lower the budget or unset it")


def _claim(out: Path, ident: dict, rank: int, world: int, log) -> None:
    """Record what is being prepared (or check that a resumed preparation is the same); with several
    ranks, check that they all see the same folder."""
    claim = out / "prepare.json"
    if rank == 0:
        if claim.is_file() and json.loads(claim.read_text()) != ident:
            raise FileInTheWay(f"--out {out} holds an unfinished preparation of other sources or settings "
                               f"({claim}); choose another --out, or delete it to start over")
        write_json_atomic(claim, ident)
    if world > 1:
        run = f"{os.environ.get('MASTER_ADDR', '')}_{os.environ.get('MASTER_PORT', '')}".replace(":", "_")
        write_json_atomic(out / ".ranks" / f"hello_{run}_rank{rank}.json", {"rank": rank})
        for r in range(world):
            try:
                wait_for(out / ".ranks" / f"hello_{run}_rank{r}.json", f"rank {r}", log=log, timeout=300)
            except TimeoutError as err:
                raise RuntimeError(f"rank {rank} cannot see rank {r}'s files in {out}: with several nodes, --out "
                                   f"must be on a filesystem every node shares") from err
        wait_for(claim, "rank 0's claim", log=log, timeout=300)
        if json.loads(claim.read_text()) != ident:
            raise InvalidValue(f"rank {rank} was given other sources or settings than rank 0 ({claim})")


def _tokenizer_for(out: Path, sources: dict[str, TextSource], settings: DataSettings, given: Tokenizer | None,
                   rank: int, log) -> Tokenizer:
    """The preparation's tokenizer, saved in ``out``: given, loaded, or trained on a bounded sample (rank 0)."""
    path = out / "tokenizer.json"
    if path.is_file():  # resumed (or written by rank 0)
        return load_tokenizer(str(path))
    if rank != 0:
        wait_for(path, "rank 0's tokenizer", log=log)
        return load_tokenizer(str(path))
    if given is not None or settings.tokenizer is not None:
        tok = given if given is not None else load_tokenizer(settings.tokenizer)
        eos_id(tok)  # documents need a separator: fail now, not after the first shard
    else:
        start = time.time()
        sample = _take_chars(iter_documents(sources["train"]), settings.tokenizer_sample_chars)
        tok = train_bpe(sample, settings.vocab_size)
        log(f"tokenizer: trained byte-level BPE ({tok.get_vocab_size()} tokens) on up to "
            f"{settings.tokenizer_sample_chars:,} characters in {time.time() - start:.1f}s")
    save_tokenizer(tok, out)
    return tok


def _take_chars(docs: Iterable[str], limit: int) -> Iterator[str]:
    seen = 0
    for doc in docs:
        if seen >= limit:
            return
        yield doc
        seen += len(doc)


def _write_manifest(out: Path, sources: dict[str, TextSource], settings: DataSettings, ident: dict,
                    tok: Tokenizer) -> None:
    splits = {}
    for split, source in sources.items():
        folder = out / split
        records = finished_shards(folder)
        budget = settings.token_budget if split == "train" else None
        kept, total = [], 0
        for k in itertools.count():
            if k not in records or (budget is not None and total >= budget):
                break
            kept.append(records[k])
            total += records[k]["tokens"]
        for extra in sorted(set(records) - {r["index"] for r in kept}):  # past the budget, or after a gap
            if budget is None or total < budget:
                raise RuntimeError(f"{folder}: shard {extra} is finished but shard {len(kept)} is not; rerun to complete it")
            (folder / records[extra]["file"]).unlink()
            (folder / f"{shard_name(extra)}.json").unlink()
            (folder / f"{shard_name(extra)}.docs").unlink(missing_ok=True)
        if budget is not None and total < budget:
            raise InvalidValue(f"data.token_budget={budget:,} is larger than the source: {source.describe()} has "
                               f"{total:,} tokens. Rerun with --data.token_budget {total} or less, or unset it "
                               f"(the finished shards in {folder} are kept and reused)")
        splits[split] = {"tokens": min(total, budget) if budget else total, "tokens_in_shards": total,
                         "documents": sum(r["documents"] for r in kept), "folder": split, "shards": kept,
                         "source": source.describe()}
        if source.holdout is not None:
            splits[split]["held_out"] = {**source.holdout.identity(), "from": source.without_holdout().describe()}
        if not kept:
            raise InvalidValue(f"{source.describe()} holds no documents")
    manifest = {
        "format_version": FORMAT_VERSION,
        "dtype": token_dtype(tok.get_vocab_size()).name,
        "tokenizer": {"file": "tokenizer.json", "hash": tokenizer_hash(tok), "vocab_size": tok.get_vocab_size(),
                      "eos_id": eos_id(tok)},
        "max_token_id": max(r["max_id"] for sp in splits.values() for r in sp["shards"]),
        "splits": splits,
        "settings": settings.preparation(),
        "preparation": ident,
    }
    write_json_atomic(out / MANIFEST, manifest)
