"""Tokenizers: a byte-level BPE trained once on the training text, or one loaded by path or name."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.files import write_atomic

EOS = "<|endoftext|>"


def train_bpe(documents: Iterable[str], vocab_size: int, *, whole_words: Iterable[str] = ()) -> Tokenizer:
    """Byte-level BPE (GPT-2 style) with one special token, the end-of-text separator.

    ``whole_words`` (e.g. a classifier's label words, with their leading space) that the trained merges
    split are added as tokens of their own (after the ``vocab_size`` learned ones), so each is one token."""
    if vocab_size < 300:
        raise InvalidValue(f"data.vocab_size={vocab_size} is too small for byte-level BPE (256 bytes + merges); use ≥ 300")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(documents, trainer)
    split = [w for w in whole_words if len(tok.encode(w).ids) != 1]
    if split:
        tok.add_tokens([AddedToken(w, normalized=False) for w in split])
    return tok


def load_tokenizer(name_or_path: str) -> Tokenizer:
    """A tokenizer.json file, a folder holding one, or a hub tokenizer name (needs the network or its cache)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    if path.suffix == ".json" or os.sep in name_or_path and not path.exists():
        raise MissingFile(f"data.tokenizer={name_or_path!r}: no such tokenizer.json file or folder")
    try:
        return Tokenizer.from_pretrained(name_or_path)
    except Exception as err:  # the tokenizers library raises a plain Exception for hub failures
        raise MissingFile(
            f"data.tokenizer={name_or_path!r} is neither a local tokenizer.json nor a reachable hub tokenizer "
            f"({err}); give a path, or leave it unset to train a BPE on the training text"
        ) from err


def eos_id(tok: Tokenizer) -> int:
    for candidate in (EOS, "</s>", "<eos>"):
        idx = tok.token_to_id(candidate)
        if idx is not None:
            return idx
    raise InvalidValue(f"the tokenizer has no end-of-text token ({EOS!r}, '</s>' or '<eos>'); documents need a separator")


def tokenizer_hash(tok: Tokenizer) -> str:
    return hashlib.sha256(tok.to_str().encode()).hexdigest()[:16]


def save_tokenizer(tok: Tokenizer, folder: Path) -> Path:
    """Write tokenizer.json atomically into folder."""
    target = folder / "tokenizer.json"
    write_atomic(target, tok.to_str())
    return target


def key_of(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
