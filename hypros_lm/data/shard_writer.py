"""Writing one split of a prepared corpus: worker processes turn documents into token ids, and shards of
D documents are written in order, each aside and renamed, with its record last (see hypros_lm.data.prepare
for the folder's layout and the whole preparation)."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from hypros_lm.data.sources import TextSource, iter_documents
from hypros_lm.data.tokenizer import eos_id
from hypros_lm.files import write_atomic

SUB_BATCH_DOCS = 256  # documents per task sent to a worker


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


def document_hash(text: str) -> int:
    """A 64-bit fingerprint of a document's text."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def shard_name(index: int) -> str:
    return f"shard_{index:06d}"


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=1))


class _ShardWriter:
    """One shard written aside, then renamed; its record written last."""

    def __init__(self, folder: Path, index: int):
        self.folder, self.index = folder, index
        self.tmp = folder / f".{shard_name(index)}.bin.tmp{os.getpid()}"
        self._f = open(self.tmp, "wb")
        self._sha = hashlib.sha256()
        self.tokens = self.documents = self.max_id = 0
        self.hashes: list[int] = []

    def add_texts(self, docs: list[str]) -> None:
        """Remember each document's fingerprint (for the check that no evaluation text is training text)."""
        self.hashes += [document_hash(d) for d in docs]

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
        final = self.folder / f"{shard_name(self.index)}.bin"
        hashes = self.folder / f"{shard_name(self.index)}.docs"
        tmp = hashes.with_name(f".{hashes.name}.tmp{os.getpid()}")
        np.asarray(self.hashes, dtype=np.uint64).tofile(tmp)
        os.replace(tmp, hashes)
        os.replace(self.tmp, final)
        record = {"index": self.index, "file": final.name, "tokens": self.tokens, "documents": self.documents,
                  "bytes": final.stat().st_size, "sha256": self._sha.hexdigest(), "max_id": self.max_id,
                  "doc_hashes": hashes.name}
        write_json_atomic(self.folder / f"{shard_name(self.index)}.json", record)
        return record


def finished_shards(folder: Path) -> dict[int, dict]:
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
    records = finished_shards(folder)
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
        seen = records if world == 1 else records | finished_shards(folder)  # other ranks' shards too
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
                writers[index].add_texts(batch)
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
