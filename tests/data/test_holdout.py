"""Held-out evaluation splits for sources with a training split only (a local .txt file, a folder of .jsonl):
disjoint from training (checked by decoding and hashing every document), seeded, the same for 1 and 2
workers, stated in the manifest; training on such a file reports its own validation counts; a prepared
folder whose validation text is training text is refused."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys

import numpy as np
import pytest

from hypros_lm.data import DataSettings, iter_documents
from hypros_lm.data.holdout import Holdout, part_of
from hypros_lm.data.shards import PreparedCorpus
from hypros_lm.data.sources import resolve_splits
from tests.helpers import REPO, run_python

DATA = REPO.parent / "shared" / "data"
PREPARE = REPO / "launch" / "prepare_data.py"


@pytest.fixture(scope="module")
def txt_file(tmp_path_factory):
    """6,000 real English sentences (Multi30k's training captions), one document per line."""
    lines = (DATA / "multi30k" / "train.en").read_text().splitlines()[:6000]
    path = tmp_path_factory.mktemp("txt") / "captions.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def jsonl_folder(tmp_path_factory):
    """A folder holding only train.jsonl: 1,500 real IMDb reviews."""
    folder = tmp_path_factory.mktemp("jsonl") / "reviews"
    folder.mkdir()
    with gzip.open(DATA / "imdb" / "test.jsonl.gz", "rt") as f:
        records = [json.loads(line) for _, line in zip(range(1500), f, strict=False)]
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in records))
    return folder


def _decoded_documents(folder, split) -> list[str]:
    """Every document of a prepared split, decoded from its tokens (independent of the preparer's own hashes)."""
    corpus = PreparedCorpus(folder)
    eos = corpus.manifest["tokenizer"]["eos_id"]
    ids = np.concatenate([np.fromfile(folder / split / r["file"], dtype=corpus.dtype)
                          for r in corpus.manifest["splits"][split]["shards"]])
    cuts = np.flatnonzero(ids == eos)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [corpus.tokenizer.decode(ids[a:b].tolist()) for a, b in zip(starts, cuts, strict=True)]


def _digest(texts) -> set[str]:
    return {hashlib.sha256(t.strip().encode()).hexdigest() for t in texts}


@pytest.mark.parametrize("source", ["txt_file", "jsonl_folder"])
def test_held_out_validation_is_disjoint_seeded_and_worker_independent(source, request, tmp_path, cache_dir):
    data = request.getfixturevalue(source)
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        run_python(["--data", str(data), "--out", str(out), "--data.vocab_size", "600", "--workers", str(workers),
                    "--no-progress"], cache_dir, script=PREPARE)
        outs[workers] = out
    m1, m2 = (json.loads((o / "manifest.json").read_text()) for o in outs.values())
    for split in ("train", "validation"):
        assert [r["sha256"] for r in m1["splits"][split]["shards"]] == [r["sha256"] for r in m2["splits"][split]["shards"]]
        assert m1["splits"][split]["held_out"]["fraction"] == 0.005 and m1["splits"][split]["held_out"]["seed"] == 0
    train, val = (_decoded_documents(outs[1], s) for s in ("train", "validation"))
    whole = list(iter_documents(resolve_splits(str(data), {"train": "train"})["train"]))
    assert len(train) + len(val) == len(whole)
    assert _digest(train).isdisjoint(_digest(val))
    assert _digest(train) | _digest(val) == _digest(whole)
    assert 0 < len(val) <= 0.1 * len(whole)
    # the minimum (counted as characters / 4 while choosing), unless a tenth of the documents is reached first
    assert m1["splits"]["validation"]["tokens"] >= 20_000 or len(val) >= 0.1 * len(whole) - 2


def _parts(holdout: Holdout, docs: list[str]) -> dict[str, int]:
    part = part_of(holdout, lambda: docs, key=f"test-{id(docs)}-{holdout}", countable=True)
    counts: dict[str, int] = {}
    for d in docs:
        counts[part(d)] = counts.get(part(d), 0) + 1
    return counts


def test_assignment_depends_on_the_seed_and_keeps_the_minimum_and_copies_together():
    docs = [line for line in (DATA / "multi30k" / "train.en").read_text().splitlines()[:10_000]]
    a = part_of(Holdout(fraction=0.01, min_tokens=0, seed=0), lambda: docs, key="a", countable=True)
    b = part_of(Holdout(fraction=0.01, min_tokens=0, seed=1), lambda: docs, key="b", countable=True)
    held_a = {d for d in docs if a(d) == "validation"}
    held_b = {d for d in docs if b(d) == "validation"}
    assert 95 <= len(held_a) <= 110 and held_a != held_b
    # a minimum of 60,000 tokens (≈ 240,000 characters) asks for more than a tenth: capped at 1,000 documents
    capped = _parts(Holdout(fraction=0.01, min_tokens=60_000, seed=0), docs)
    assert 1000 <= capped["validation"] <= 1010
    two = _parts(Holdout(fraction=0.01, min_tokens=0, seed=0, parts=("validation", "test")), docs)
    assert 95 <= two["validation"] <= 110 and 95 <= two["test"] <= 110
    copies = docs[:50] * 3 + docs[50:2000]  # every copy of a text goes where the text goes
    part = part_of(Holdout(fraction=0.05, min_tokens=0, seed=3), lambda: copies, key="copies", countable=True)
    assert all(part(d) == part(copies[i]) for i, d in enumerate(copies[50:150], 50))


def test_training_on_a_single_file_holds_out_its_validation(txt_file, tmp_path, cache_dir):
    out = tmp_path / "run"
    proc = run_python(["--model", "nano", "--data", str(txt_file), "--seq-len", "32", "--micro-batch-size", "4",
                       "--max-steps", "2", "--data.vocab_size", "600",
                       "--train.eval_every", "2", "--train.eval_batches", "1", "--out", str(out)], cache_dir)
    line = next(x for x in proc.stdout.splitlines() if " train and " in x and "val sequences" in x)
    train_n, val_n = (int(x) for x in re.search(r"(\d+) train and (\d+) val sequences", line).groups())
    assert train_n > 5 * val_n > 0, line  # a tenth of the documents at most
    assert "held out of" in proc.stdout


def test_a_folder_whose_validation_is_training_text_is_refused(jsonl_folder, tmp_path, cache_dir):
    out = tmp_path / "same"
    run_python(["--data", str(jsonl_folder), "--out", str(out), "--data.vocab_size", "600", "--splits", "train",
                "validation=train", "--no-progress"], cache_dir, script=PREPARE)
    proc = run_python(["--model", "nano", "--data", str(out), "--seq-len", "32", "--max-steps", "1",
                       "--out", str(tmp_path / "run")], cache_dir, check=False)
    assert proc.returncode != 0
    assert "validation documents are also train documents" in proc.stderr, proc.stderr[-1500:]


def test_settings_check_the_fraction():
    with pytest.raises(ValueError, match=r"data.holdout_fraction=0.5 must lie in \(0, 0.1\]"):
        DataSettings(holdout_fraction=0.5)
    assert sys.version_info >= (3, 10)
