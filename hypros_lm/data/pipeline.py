"""From data settings to a tokenizer and train/validation token blocks.

Every corpus is read from a prepared folder ([`hypros_lm.data.prepare`][hypros_lm.data.prepare]): one the user prepared with
``launch/prepare_data.py`` (the way for large corpora), or, for small ones (WikiText-2, local files), the
same preparer run in-process into the cache by local rank 0 of each node while the other ranks wait for
its manifest file. A large hub corpus is never tokenized inside a training job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from hypros_lm.data.holdout import Holdout
from hypros_lm.data.packing import cache_root
from hypros_lm.data.prepare import prepare_corpus
from hypros_lm.data.settings import DataSettings
from hypros_lm.data.shards import MANIFEST, PreparedCorpus, TokenBlocks, check_disjoint, is_prepared
from hypros_lm.data.sources import TextSource, canonical_split, resolve_splits
from hypros_lm.data.tokenizer import key_of, load_tokenizer, save_tokenizer, tokenizer_hash, train_bpe
from hypros_lm.errors import InvalidValue
from hypros_lm.files import run_once, wait_for


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: TokenBlocks
    val: TokenBlocks
    sources: dict[str, str]


def resolve_sources(settings: DataSettings) -> dict[str, TextSource]:
    """Resolve both splits up front (cheap), so a missing split fails before any heavy work.
    A prepared folder has its own splits: they are checked when it is opened."""
    if is_prepared(settings.name):
        return {}
    holdout = Holdout(fraction=settings.holdout_fraction, min_tokens=settings.holdout_min_tokens,
                      seed=settings.holdout_seed)
    sources = resolve_splits(settings.name, {"train": settings.train_split, "val": settings.val_split},
                             text_field=settings.text_field, holdout=holdout)
    if needs_preparation(sources["train"]):
        raise InvalidValue(preparation_hint(settings))
    return sources


def needs_preparation(source: TextSource) -> bool:
    """A corpus too large to tokenize inside a training job: a streamed or large hub data set."""
    return source.path is None and (source.hub.streaming or source.hub.prepare_first)


def preparation_hint(settings: DataSettings) -> str:
    slug = Path(settings.name).name.replace("/", "_") + f"-{settings.vocab_size // 1024}k"
    budget = f" --data.token_budget {settings.token_budget}" if settings.token_budget else ""
    return (f"data.name={settings.name!r} is a large corpus: it is prepared once, outside the training job "
            f"(in parallel, resumable), then trained from the prepared folder:\n"
            f"  python launch/prepare_data.py --data {settings.name} --data.vocab_size {settings.vocab_size}{budget} "
            f"--workers 32 --out data/{slug}\n"
            f"  deepspeed launch/pretrain.py --data data/{slug} ...")


def prepared_folder(settings: DataSettings, sources: dict[str, TextSource], *, local_rank: int,
                    log: Callable[[str], None] = print) -> Path:
    """The prepared folder of these settings: the one named, or the cached in-process preparation."""
    if is_prepared(settings.name):
        return Path(settings.name).expanduser()
    splits = {"train": sources["train"], sources["val"].split: sources["val"]}
    key = {"sources": {k: s.identity() for k, s in splits.items()}, "settings": settings.preparation()}
    folder = cache_root() / "prepared" / f"{Path(settings.name).name.replace('/', '_')}-{key_of(key)}"
    if local_rank == 0:  # one process among the nodes that share the cache prepares (it claims the folder)
        prepare_corpus(folder, splits, settings, progress=False, log=log)
    else:  # wait on the file, not on a collective with a timeout
        wait_for(folder / MANIFEST, f"local rank 0 to prepare {settings.name}", log=log)
    return folder


def prepare_data(settings: DataSettings, *, sources: dict[str, TextSource] | None = None, local_rank: int | None = None,
                 log: Callable[[str], None] = print) -> PreparedData:
    """Tokenizer and blocks for training: memory-mapped from a prepared folder (prepared first if small)."""
    sources = resolve_sources(settings) if sources is None else sources
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    folder = prepared_folder(settings, sources, local_rank=local_rank, log=log)
    # sizes are checked on every rank; the sha256 of every byte once per node (its local rank 0)
    corpus = PreparedCorpus(folder, verify_sha256=settings.verify_shards and local_rank == 0)
    if settings.tokenizer is not None and is_prepared(settings.name):
        wanted = load_tokenizer(settings.tokenizer)
        if tokenizer_hash(wanted) != corpus.manifest["tokenizer"]["hash"]:
            raise InvalidValue(f"data.tokenizer={settings.tokenizer} differs from the tokenizer {folder} was prepared "
                               f"with ({folder / 'tokenizer.json'}); unset data.tokenizer to use the folder's, or "
                               f"prepare the corpus again with this tokenizer")
    train_split, val_split = canonical_split(settings.train_split), canonical_split(settings.val_split)
    note = check_disjoint(corpus, train_split, val_split)
    if note:
        log(f"data: {note}")
    train = corpus.blocks(train_split, settings.seq_len, token_budget=settings.token_budget)
    val = corpus.blocks(val_split, settings.seq_len)
    described = {split: info["source"] for split, info in corpus.manifest["splits"].items()}
    held = corpus.manifest["splits"][val_split].get("held_out")
    log(f"data: {folder} (train {train.total_tokens:,} tokens in {len(train.shards)} shard(s), "
        f"{val_split} {val.total_tokens:,} tokens" + (f", held out of {held['from']}" if held else "") + ")")
    return PreparedData(corpus.tokenizer, train, val, described | {"prepared": str(folder)})


def prepared_blocks(source: TextSource, tokenizer: Tokenizer, seq_len: int) -> TokenBlocks:
    """Blocks of one split tokenized with a given tokenizer (evaluation), prepared once into the cache."""
    key = {"source": source.identity(), "tokenizer": tokenizer_hash(tokenizer)}
    folder = cache_root() / "prepared" / f"{source.name.replace('/', '_')}-{source.split}-{key_of(key)}"
    prepare_corpus(folder, {source.split: source}, DataSettings(), tokenizer=tokenizer, progress=False,
                   log=lambda _msg: None)
    return PreparedCorpus(folder).blocks(source.split, seq_len)


def cached_bpe_folder(key: dict, whole_words: tuple[str, ...] = ()) -> Path:
    return cache_root() / "tokenizers" / key_of({**key, "whole_words": list(whole_words)} if whole_words else key)


def cached_bpe(key: dict, documents: Callable[[], Iterable[str]], vocab_size: int, *,
               whole_words: tuple[str, ...] = (), log: Callable[[str], None] = print) -> Tokenizer:
    """The byte-level BPE cached under ``key``, trained on ``documents()`` and saved the first time
    (so a second run, or another rank, reads the same tokenizer). Used by fine-tunes from scratch."""
    folder = cached_bpe_folder(key, whole_words)
    start = time.time()

    def train() -> None:
        tok = train_bpe(documents(), vocab_size, whole_words=whole_words)
        save_tokenizer(tok, folder)
        log(f"tokenizer: trained byte-level BPE ({tok.get_vocab_size()} tokens) in {time.time() - start:.1f}s")

    if not run_once(folder / "tokenizer.json", train, what="another process to train the tokenizer", log=log):
        log(f"tokenizer: cached BPE {folder / 'tokenizer.json'}")
    return load_tokenizer(str(folder))
