"""Corpus preparation, once and outside the training job: text → tokenizer + token shards + manifest.

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

import collections
import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer

from hypros_lm.data.sources import TextSource, iter_documents
from hypros_lm.data.tokenizer import eos_id, load_tokenizer, save_tokenizer, tokenizer_hash, train_bpe
from hypros_lm.files import ensure_writable, write_atomic

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUB_BATCH_DOCS = 256  # documents per task sent to a worker


@dataclass(kw_only=True)
class PrepareSettings:
    """How a corpus is prepared (recorded in the manifest; a resumed preparation must match)."""

    vocab_size: int = 8192
    """Vocabulary of the byte-level BPE trained on a sample of the training text (unless a tokenizer is given)."""
    tokenizer: str | None = None
    """A tokenizer.json path/folder or hub name to use instead of training one."""
    tokenizer_sample_chars: int = 200_000_000
    """Characters of training text the BPE learns from: the first documents up to this many (≈ 200 MB,
    a few GB of memory while training; whole small corpora fit in it)."""
    token_budget: int | None = None
    """Keep this many training tokens (the shards in order, cut at the budget); None: the whole split."""
    docs_per_shard: int = 65536
    """Documents per shard (≈ 100M tokens for web text, 200 MB at uint16)."""

    def __post_init__(self) -> None:
        if self.docs_per_shard < 1:
            raise ValueError(f"docs_per_shard={self.docs_per_shard} must be ≥ 1")
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"token_budget={self.token_budget} must be ≥ 1 (or unset for the whole split)")
        if self.tokenizer_sample_chars < 1:
            raise ValueError(f"tokenizer_sample_chars={self.tokenizer_sample_chars} must be ≥ 1")


# ---------------------------------------------------------------- workers: documents → token ids


_WORKER_TOKENIZER: tuple[Tokenizer, int, np.dtype] | None = None


def _init_worker(tokenizer_json: str, dtype: str) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the worker count is what scales
    tok = Tokenizer.from_str(tokenizer_json)
    _WORKER_TOKENIZER = (tok, eos_id(tok), np.dtype(dtype))


def _encode_in_worker(docs: list[str]) -> np.ndarray:
    assert _WORKER_TOKENIZER is not None
    return encode_documents(docs, *_WORKER_TOKENIZER)


def encode_documents(docs: list[str], tok: Tokenizer, eos: int, dtype: np.dtype) -> np.ndarray:
    """The documents' token ids, each document followed by the end-of-text id, concatenated."""
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no character offsets: faster
    pieces = []
    for enc in encode(docs):
        pieces.append(np.asarray(enc.ids, dtype=dtype))
        pieces.append(np.asarray([eos], dtype=dtype))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


class _Encoder:
    """Sub-batches in, token arrays out, in order: in this process, or by a pool of worker processes
    with at most ``2 × workers`` sub-batches in flight (the reader never runs ahead of the workers)."""

    def __init__(self, tok: Tokenizer, dtype: np.dtype, workers: int):
        self._local = (tok, eos_id(tok), dtype) if workers <= 1 else None
        self._pool = None
        if workers > 1:
            import multiprocessing

            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(tok.to_str(), dtype.name))
        self._inflight: collections.deque[tuple[Any, Future | np.ndarray]] = collections.deque()
        self._limit = 2 * max(1, workers)

    def submit(self, tag: Any, docs: list[str]) -> Iterator[tuple[Any, np.ndarray]]:
        """Queue a sub-batch; yield the (tag, tokens) results that are due, oldest first."""
        if self._pool is None:
            yield tag, encode_documents(docs, *self._local)
            return
        self._inflight.append((tag, self._pool.submit(_encode_in_worker, docs)))
        while len(self._inflight) > self._limit:
            tag_done, fut = self._inflight.popleft()
            yield tag_done, fut.result()

    def drain(self) -> Iterator[tuple[Any, np.ndarray]]:
        while self._inflight:
            tag, fut = self._inflight.popleft()
            yield tag, fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


# ---------------------------------------------------------------- shards


def _shard_name(index: int) -> str:
    return f"shard_{index:06d}"


def _write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=1))


class _ShardWriter:
    """One shard written aside, then renamed; its record written last."""

    def __init__(self, folder: Path, index: int):
        self.folder, self.index = folder, index
        self.tmp = folder / f".{_shard_name(index)}.bin.tmp{os.getpid()}"
        self._f = open(self.tmp, "wb")
        self._sha = hashlib.sha256()
        self.tokens = self.documents = self.max_id = 0

    def add(self, ids: np.ndarray, documents: int) -> None:
        data = ids.tobytes()
        self._f.write(data)
        self._sha.update(data)
        self.tokens += len(ids)
        self.documents += documents
        if len(ids):
            self.max_id = max(self.max_id, int(ids.max()))

    def close(self) -> dict:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        final = self.folder / f"{_shard_name(self.index)}.bin"
        os.replace(self.tmp, final)
        record = {"index": self.index, "file": final.name, "tokens": self.tokens, "documents": self.documents,
                  "bytes": final.stat().st_size, "sha256": self._sha.hexdigest(), "max_id": self.max_id}
        _write_json_atomic(self.folder / f"{_shard_name(self.index)}.json", record)
        return record


def _finished_shards(folder: Path) -> dict[int, dict]:
    """Records of the shards already complete (their .bin present with the recorded size)."""
    done = {}
    for rec_file in folder.glob("shard_*.json"):
        record = json.loads(rec_file.read_text())
        shard = folder / record["file"]
        if shard.is_file() and shard.stat().st_size == record["bytes"]:
            done[record["index"]] = record
    return done


def _prefix_tokens(records: dict[int, dict]) -> int:
    """Tokens of the unbroken run of finished shards from shard 0."""
    total, k = 0, 0
    while k in records:
        total += records[k]["tokens"]
        k += 1
    return total


# ---------------------------------------------------------------- one split


@dataclass
class _Progress:
    """A progress bar (rank 0) of documents, tokens, tokens/s and time left against the budget."""

    total: int | None
    label: str
    enabled: bool

    def __post_init__(self) -> None:
        self.bar = None
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="tok", unit_scale=True, desc=self.label, smoothing=0.05,
                            mininterval=2.0)
        self.docs = 0

    def update(self, tokens: int, docs: int) -> None:
        self.docs += docs
        if self.bar is not None:
            self.bar.update(tokens)
            self.bar.set_postfix(docs=f"{self.docs:,}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def prepare_split(source: TextSource, folder: Path, tok: Tokenizer, *, docs_per_shard: int,
                  token_budget: int | None = None, workers: int = 1, rank: int = 0, world: int = 1,
                  progress: bool = True, label: str | None = None) -> None:
    """Write this rank's shards of one split into ``folder`` (resuming), until the source ends or the
    finished shards in order reach the token budget (a shard in flight then may go past it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".shard_*.bin.tmp*"):  # a killed preparation's unfinished shards (this rank's own)
        if int(stale.name.split("_")[1].split(".")[0]) % world == rank:
            stale.unlink(missing_ok=True)
    records = _finished_shards(folder)
    mine_done = [r for r in records.values() if r["index"] % world == rank]
    label = label or source.split
    bar = _Progress(token_budget, label if world == 1 else f"{label} (rank 0 of {world})", progress)
    bar.update(sum(r["tokens"] for r in mine_done), sum(r["documents"] for r in mine_done))
    encoder = _Encoder(tok, token_dtype(tok.get_vocab_size()), workers)
    writers: dict[int, _ShardWriter] = {}
    outstanding: dict[int, int] = {}  # shard → sub-batches not yet back from the workers
    reading: int | None = None  # the shard whose documents are being read

    def receive(results: Iterable[tuple[tuple[int, int], np.ndarray]]) -> None:
        for (index, docs), ids in results:
            writers[index].add(ids, docs)
            bar.update(len(ids), docs)
            outstanding[index] -= 1
            if outstanding[index] == 0 and index != reading:
                records[index] = writers.pop(index).close()

    def budget_reached() -> bool:
        if token_budget is None:
            return False
        seen = records if world == 1 else records | _finished_shards(folder)  # other ranks' shards too
        return _prefix_tokens(seen) >= token_budget

    docs = iter(iter_documents(source))
    try:
        for index in itertools.count():
            if budget_reached():
                break
            unit = islice(docs, docs_per_shard)
            if index % world != rank or index in records:  # another rank's shard, or finished: read past it
                if sum(1 for _ in unit) == 0:
                    break
                continue
            batch = list(islice(unit, SUB_BATCH_DOCS))
            if not batch:  # the source has ended
                break
            reading, writers[index], outstanding[index] = index, _ShardWriter(folder, index), 0
            while batch:
                outstanding[index] += 1
                receive(encoder.submit((index, len(batch)), batch))
                batch = list(islice(unit, SUB_BATCH_DOCS))
            reading = None
            if outstanding[index] == 0:
                records[index] = writers.pop(index).close()
        receive(encoder.drain())
    finally:
        encoder.close()
        bar.close()


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


# ---------------------------------------------------------------- the whole preparation


def launcher_rank() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (deepspeed or torchrun); (0, 1) without one."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def wait_for(path: Path, what: str, *, log: Callable[[str], None] = print, timeout: float | None = None,
             poll: float = 0.5) -> None:
    """Wait until ``path`` exists (another process writes it atomically), saying so every minute."""
    start = last = time.time()
    while not path.exists():
        now = time.time()
        if timeout is not None and now - start > timeout:
            raise TimeoutError(f"waited {timeout:.0f}s for {what} ({path})")
        if now - last > 60:
            log(f"waiting for {what} ({path}, {now - start:.0f}s so far)")
            last = now
        time.sleep(poll)


def _preparation_id(sources: dict[str, TextSource], settings: PrepareSettings, tokenizer: Tokenizer | None) -> dict:
    """What determines the prepared corpus: a resumed preparation must have the same."""
    return {"format_version": FORMAT_VERSION, "sources": {split: s.identity() for split, s in sources.items()},
            "settings": asdict(settings), "given_tokenizer": tokenizer_hash(tokenizer) if tokenizer else None}




def prepare_corpus(out: Path, sources: dict[str, TextSource], settings: PrepareSettings, *,
                   tokenizer: Tokenizer | None = None, workers: int = 1, rank: int = 0, world: int = 1,
                   progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Prepare (or resume, or find already prepared) every split of ``sources`` into ``out``.

    ``sources`` maps split names to sources; the token budget applies to ``train``. ``tokenizer`` (an
    object) overrides ``settings.tokenizer``. With several ranks, ``out`` must be on a filesystem they share.
    """
    out = Path(out)
    ident = _preparation_id(sources, settings, tokenizer)
    manifest_file = out / MANIFEST
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("preparation") == ident:
            log(f"data: {out} is already prepared (" + ", ".join(
                f"{split} {info['tokens']:,} tokens" for split, info in manifest["splits"].items()) + ")")
            return out
        raise FileExistsError(f"--out {out} already holds a prepared corpus of other sources or settings; "
                              f"choose another --out (nothing was overwritten)")
    ensure_writable(out, "--out")
    _check_budget_fits(sources, settings)
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
    _write_json_atomic(ranks_dir / f"rank{rank}.done", {"rank": rank, "seconds": time.time() - start})
    if rank == 0:
        for r in range(world):
            wait_for(ranks_dir / f"rank{r}.done", f"rank {r} to finish its shards", log=log)
        _write_manifest(out, sources, settings, ident, tok)
        shutil.rmtree(ranks_dir, ignore_errors=True)
        log(f"data: prepared {out} in {time.time() - start:.1f}s")
    else:
        wait_for(manifest_file, "rank 0 to write the manifest", log=log)
    return out


def _check_budget_fits(sources: dict[str, TextSource], settings: PrepareSettings) -> None:
    """A plain local file cannot hold more tokens than bytes plus one end-of-text per line: say so before any work."""
    src = sources.get("train")
    if settings.token_budget is None or src is None or src.path is None or src.path.suffix == ".gz":
        return
    size = src.path.stat().st_size
    if settings.token_budget > 2 * size:
        raise ValueError(f"--token-budget {settings.token_budget:,} is larger than the source can hold: "
                         f"{src.describe()} has {size:,} bytes (at most ~{2 * size:,} tokens); lower the budget or unset it")


def _claim(out: Path, ident: dict, rank: int, world: int, log) -> None:
    """Record what is being prepared (or check that a resumed preparation is the same); with several
    ranks, check that they all see the same folder."""
    claim = out / "prepare.json"
    if rank == 0:
        if claim.is_file() and json.loads(claim.read_text()) != ident:
            raise FileExistsError(f"--out {out} holds an unfinished preparation of other sources or settings "
                                  f"({claim}); choose another --out, or delete it to start over")
        _write_json_atomic(claim, ident)
    if world > 1:
        run = f"{os.environ.get('MASTER_ADDR', '')}_{os.environ.get('MASTER_PORT', '')}".replace(":", "_")
        _write_json_atomic(out / ".ranks" / f"hello_{run}_rank{rank}.json", {"rank": rank})
        for r in range(world):
            try:
                wait_for(out / ".ranks" / f"hello_{run}_rank{r}.json", f"rank {r}", log=log, timeout=300)
            except TimeoutError as err:
                raise RuntimeError(f"rank {rank} cannot see rank {r}'s files in {out}: with several nodes, --out "
                                   f"must be on a filesystem every node shares") from err
        wait_for(claim, "rank 0's claim", log=log, timeout=300)
        if json.loads(claim.read_text()) != ident:
            raise ValueError(f"rank {rank} was given other sources or settings than rank 0 ({claim})")


def _tokenizer_for(out: Path, sources: dict[str, TextSource], settings: PrepareSettings, given: Tokenizer | None,
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


def _write_manifest(out: Path, sources: dict[str, TextSource], settings: PrepareSettings, ident: dict,
                    tok: Tokenizer) -> None:
    splits = {}
    for split, source in sources.items():
        folder = out / split
        records = _finished_shards(folder)
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
            (folder / f"{_shard_name(extra)}.json").unlink()
        if budget is not None and total < budget:
            raise ValueError(f"--token-budget {budget:,} is larger than the source: {source.describe()} has "
                             f"{total:,} tokens. Rerun with --token-budget {total} or less, or unset it "
                             f"(the finished shards in {folder} are kept and reused)")
        splits[split] = {"tokens": min(total, budget) if budget else total, "tokens_in_shards": total,
                         "documents": sum(r["documents"] for r in kept), "folder": split, "shards": kept,
                         "source": source.describe()}
        if not kept:
            raise ValueError(f"{source.describe()} holds no documents")
    manifest = {
        "format_version": FORMAT_VERSION,
        "dtype": token_dtype(tok.get_vocab_size()).name,
        "tokenizer": {"file": "tokenizer.json", "hash": tokenizer_hash(tok), "vocab_size": tok.get_vocab_size(),
                      "eos_id": eos_id(tok)},
        "max_token_id": max(r["max_id"] for sp in splits.values() for r in sp["shards"]),
        "splits": splits,
        "settings": asdict(settings),
        "preparation": ident,
    }
    _write_json_atomic(out / MANIFEST, manifest)


# ---------------------------------------------------------------- reading a prepared folder


def is_prepared(path: str | Path) -> bool:
    return (Path(path).expanduser() / MANIFEST).is_file()


def read_manifest(folder: str | Path) -> dict:
    """A prepared folder's manifest, if this version can read it (cheap: no shard is opened)."""
    manifest_file = Path(folder).expanduser() / MANIFEST
    if not manifest_file.is_file():
        raise FileNotFoundError(f"{manifest_file.parent} is not a prepared corpus (no {MANIFEST}); prepare it with "
                                f"`python launch/prepare_data.py --data NAME --out {manifest_file.parent}`")
    manifest = json.loads(manifest_file.read_text())
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{manifest_file} has format version {version!r}; this hypros-lm reads version "
                         f"{FORMAT_VERSION}. Prepare the corpus again with this version's launch/prepare_data.py")
    return manifest


class PreparedCorpus:
    """A prepared folder, checked: its format version, tokenizer and every shard's size (and sha256)."""

    def __init__(self, folder: str | Path, *, verify_sha256: bool = True):
        self.folder = Path(folder).expanduser()
        self.manifest = read_manifest(self.folder)
        self.tokenizer = load_tokenizer(str(self.folder / self.manifest["tokenizer"]["file"]))
        if tokenizer_hash(self.tokenizer) != self.manifest["tokenizer"]["hash"]:
            raise ValueError(f"{self.folder / 'tokenizer.json'} is not the tokenizer the shards were made with "
                             f"(hash {tokenizer_hash(self.tokenizer)} ≠ {self.manifest['tokenizer']['hash']}); prepare again")
        self.dtype = np.dtype(self.manifest["dtype"])
        for split in self.manifest["splits"]:
            self._check_shards(split, verify_sha256)

    def _check_shards(self, split: str, verify_sha256: bool) -> None:
        for record in self.manifest["splits"][split]["shards"]:
            path = self.folder / split / record["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing from the prepared corpus {self.folder}; "
                                        f"rerun launch/prepare_data.py with the same settings to restore it")
            if path.stat().st_size != record["bytes"]:
                raise ValueError(f"{path} holds {path.stat().st_size:,} bytes, the manifest says {record['bytes']:,}: "
                                 f"truncated or replaced; delete it and rerun launch/prepare_data.py with the same settings")
            if verify_sha256 and _sha256(path) != record["sha256"]:
                raise ValueError(f"{path}: sha256 differs from the manifest's (corrupted); delete it and rerun "
                                 f"launch/prepare_data.py with the same settings")

    def split_names(self) -> list[str]:
        return list(self.manifest["splits"])

    def blocks(self, split: str, seq_len: int, *, token_budget: int | None = None) -> TokenBlocks:
        """The split's blocks, over its first ``token_budget`` tokens when given."""
        if split not in self.manifest["splits"]:
            raise FileNotFoundError(f"the prepared corpus {self.folder} has no {split!r} split; it has {self.split_names()}")
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
            raise ValueError(f"{shards[0].parent} holds {self.total_tokens} tokens: fewer than one block of "
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
