"""Reading a prepared corpus (written by hypros_lm.data.prepare): its manifest, the checked folder, and the
token blocks training memory-maps. Training imports this module, never the writer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hypros_lm.data.tokenizer import load_tokenizer, tokenizer_hash
from hypros_lm.errors import InvalidValue, MissingFile

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def is_prepared(path: str | Path) -> bool:
    return (Path(path).expanduser() / MANIFEST).is_file()


def read_manifest(folder: str | Path) -> dict:
    """A prepared folder's manifest, if this version can read it (cheap: no shard is opened)."""
    manifest_file = Path(folder).expanduser() / MANIFEST
    if not manifest_file.is_file():
        raise MissingFile(f"{manifest_file.parent} is not a prepared corpus (no {MANIFEST}); prepare it with "
                          f"`python launch/prepare_data.py --data NAME --out {manifest_file.parent}`")
    manifest = json.loads(manifest_file.read_text())
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InvalidValue(f"{manifest_file} has format version {version!r}; this hypros-lm reads version "
                           f"{FORMAT_VERSION}. Prepare the corpus again with this version's launch/prepare_data.py")
    return manifest


class PreparedCorpus:
    """A prepared folder, checked: its format version, tokenizer and every shard's size (and sha256)."""

    def __init__(self, folder: str | Path, *, verify_sha256: bool = True):
        self.folder = Path(folder).expanduser()
        self.manifest = read_manifest(self.folder)
        self.tokenizer = load_tokenizer(str(self.folder / self.manifest["tokenizer"]["file"]))
        if tokenizer_hash(self.tokenizer) != self.manifest["tokenizer"]["hash"]:
            raise InvalidValue(f"{self.folder / 'tokenizer.json'} is not the tokenizer the shards were made with "
                               f"(hash {tokenizer_hash(self.tokenizer)} ≠ {self.manifest['tokenizer']['hash']}); prepare again")
        self.dtype = np.dtype(self.manifest["dtype"])
        for split in self.manifest["splits"]:
            self._check_shards(split, verify_sha256)

    def _check_shards(self, split: str, verify_sha256: bool) -> None:
        for record in self.manifest["splits"][split]["shards"]:
            path = self.folder / split / record["file"]
            if not path.is_file():
                raise MissingFile(f"{path} is missing from the prepared corpus {self.folder}; "
                                  f"rerun launch/prepare_data.py with the same settings to restore it")
            if path.stat().st_size != record["bytes"]:
                raise InvalidValue(f"{path} holds {path.stat().st_size:,} bytes, the manifest says {record['bytes']:,}: "
                                   f"truncated or replaced; delete it and rerun launch/prepare_data.py with the same settings")
            if verify_sha256 and _sha256(path) != record["sha256"]:
                raise InvalidValue(f"{path}: sha256 differs from the manifest's (corrupted); delete it and rerun "
                                   f"launch/prepare_data.py with the same settings")

    def document_hashes(self, split: str) -> np.ndarray | None:
        """The split's document fingerprints (None for a folder prepared before they were recorded)."""
        records = self.manifest["splits"][split]["shards"]
        if not all("doc_hashes" in r for r in records):
            return None
        return np.concatenate([np.fromfile(self.folder / split / r["doc_hashes"], dtype=np.uint64) for r in records])

    def split_names(self) -> list[str]:
        return list(self.manifest["splits"])

    def blocks(self, split: str, seq_len: int, *, token_budget: int | None = None) -> TokenBlocks:
        """The split's blocks, over its first ``token_budget`` tokens when given."""
        if split not in self.manifest["splits"]:
            raise MissingFile(f"the prepared corpus {self.folder} has no {split!r} split; it has {self.split_names()}")
        info = self.manifest["splits"][split]
        paths = [self.folder / split / r["file"] for r in info["shards"]]
        total = info["tokens"] if token_budget is None else min(info["tokens"], token_budget)
        return TokenBlocks(paths, seq_len, dtype=self.dtype, total_tokens=total)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


class TokenBlocks:
    """Non-overlapping blocks of seq_len + 1 tokens (inputs and shifted targets) over the concatenation
    of memory-mapped shards: block i starts at token i·seq_len wherever the shard boundaries fall."""

    def __init__(self, shards: list[Path], seq_len: int, *, dtype: np.dtype, total_tokens: int | None = None):
        self.shards = [np.memmap(p, dtype=dtype, mode="r") for p in shards]
        self.starts = np.cumsum([0] + [len(s) for s in self.shards])  # first global token of each shard
        self.total_tokens = int(self.starts[-1] if total_tokens is None else min(total_tokens, self.starts[-1]))
        self.seq_len = seq_len
        self.num_blocks = (self.total_tokens - 1) // seq_len
        if self.num_blocks < 1:
            raise InvalidValue(f"{shards[0].parent} holds {self.total_tokens} tokens: fewer than one block of "
                               f"seq_len={seq_len}")

    def __len__(self) -> int:
        return self.num_blocks

    def tokens(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of the concatenation."""
        out, pos = [], start
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        while length > 0:
            offset = pos - int(self.starts[shard])
            piece = self.shards[shard][offset:offset + length]
            out.append(piece)
            pos, length, shard = pos + len(piece), length - len(piece), shard + 1
        return np.concatenate(out) if len(out) > 1 else np.asarray(out[0])

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (B, seq_len) int64."""
        import torch  # here, not at the top: tokenizer worker processes import this module and need no torch

        rows = np.stack([self.tokens(int(i) * self.seq_len, self.seq_len + 1) for i in indices])
        rows = torch.from_numpy(rows.astype(np.int64))
        return rows[:, :-1], rows[:, 1:]


def check_disjoint(corpus: PreparedCorpus, train: str, evaluation: str) -> str:
    """Refuse a corpus whose evaluation documents are training documents (the same text prepared twice);
    a few shared documents (duplicates that real corpora hold) are reported, not refused. Returns a note."""
    a, b = corpus.document_hashes(train), corpus.document_hashes(evaluation)
    if a is None or b is None:
        return f"{corpus.folder} records no document fingerprints (prepared by an earlier version): overlap not checked"
    shared = int(np.isin(b, a).sum())
    if shared > len(b) // 2:
        raise InvalidValue(f"{corpus.folder}: {shared:,} of the {len(b):,} {evaluation} documents are also {train} "
                           f"documents: its {evaluation} split is training text. Give a separate {evaluation} file, or "
                           f"let the preparation hold one out (a single file or a folder with train.* only does)")
    return f"{shared:,} of {len(b):,} {evaluation} documents also occur in {train}" if shared else ""
