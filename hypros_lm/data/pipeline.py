"""From data settings to a tokenizer and train/validation token blocks, cached."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer

from hypros_lm.data.packing import TokenBlocks, cache_root, tokenize_to_cache
from hypros_lm.data.sources import TextSource, iter_documents, resolve_source
from hypros_lm.data.tokenizer import key_of, load_tokenizer, save_tokenizer, train_bpe


@dataclass(kw_only=True)
class DataSettings:
    name: str = "wikitext-2-v1"
    """Hub name (offline: resolved to the data folder), or a local file/folder of .txt/.jsonl/.parquet."""
    train_split: str = "train"
    val_split: str = "validation"
    text_field: str = "text"
    """Field holding the text in .jsonl/.parquet records and hub rows."""
    seq_len: int = 128
    """Tokens per training sequence."""
    tokenizer: str | None = None
    """tokenizer.json path/folder or hub name; None trains a byte-level BPE on the training split."""
    vocab_size: int = 8192
    """Vocabulary of a trained BPE."""
    token_budget: int | None = None
    """Read at most this many training tokens (for large or streamed corpora)."""

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ValueError(f"data.seq_len={self.seq_len} must be at least 2")
        if self.token_budget is not None and self.token_budget <= self.seq_len:
            raise ValueError(f"data.token_budget={self.token_budget} must exceed data.seq_len={self.seq_len}")


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: TokenBlocks
    val: TokenBlocks
    sources: dict[str, str]


def resolve_sources(settings: DataSettings) -> dict[str, TextSource]:
    """Resolve both splits up front (cheap), so a missing split fails before any heavy work."""
    return {
        split: resolve_source(settings.name, getattr(settings, f"{split}_split"), text_field=settings.text_field)
        for split in ("train", "val")
    }


def get_tokenizer(settings: DataSettings, train: TextSource, *, log: Callable[[str], None] = print) -> Tokenizer:
    if settings.tokenizer is not None:
        return load_tokenizer(settings.tokenizer)

    def documents() -> Iterable[str]:
        docs = iter_documents(train)
        if settings.token_budget is not None:  # ~4 bytes per token: enough text to cover the budget
            docs = _take_chars(docs, settings.token_budget * 4)
        return docs

    key = {"source": train.identity(), "vocab": settings.vocab_size, "budget": settings.token_budget}
    return cached_bpe(key, documents, settings.vocab_size, log=log)


def cached_bpe(key: dict, documents: Callable[[], Iterable[str]], vocab_size: int, *,
               log: Callable[[str], None] = print) -> Tokenizer:
    """The byte-level BPE cached under ``key``, trained on ``documents()`` and saved the first time
    (so a second run, or another rank, reads the same tokenizer)."""
    folder = cache_root() / "tokenizers" / key_of(key)
    if (folder / "tokenizer.json").is_file():
        log(f"tokenizer: cached BPE {folder / 'tokenizer.json'}")
        return load_tokenizer(str(folder))
    start = time.time()
    tok = train_bpe(documents(), vocab_size)
    save_tokenizer(tok, folder)
    log(f"tokenizer: trained byte-level BPE ({tok.get_vocab_size()} tokens) in {time.time() - start:.1f}s")
    return tok


def _take_chars(docs, limit: int):
    seen = 0
    for doc in docs:
        yield doc
        seen += len(doc)
        if seen >= limit:
            return


def prepare_data(
    settings: DataSettings, *, sources: dict[str, TextSource] | None = None, log: Callable[[str], None] = print
) -> PreparedData:
    sources = sources or resolve_sources(settings)
    tok = get_tokenizer(settings, sources["train"], log=log)
    train = TokenBlocks(tokenize_to_cache(sources["train"], tok, token_budget=settings.token_budget, log=log),
                        settings.seq_len)
    val = TokenBlocks(tokenize_to_cache(sources["val"], tok, log=log), settings.seq_len)
    return PreparedData(tok, train, val, {k: s.describe() for k, s in sources.items()})

