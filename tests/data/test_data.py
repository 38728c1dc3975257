"""Data resolution, documents, tokenizer and packed blocks, on the real offline copies."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest

from hypros_lm.data import (
    BlockOrder,
    DataSettings,
    TokenBlocks,
    data_dir,
    iter_documents,
    prepare_data,
    resolve_source,
    train_bpe,
)

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="needs the offline data folder ../shared/data")


def test_hub_name_resolves_to_the_local_copy_and_says_so():
    src = resolve_source("wikitext-2-v1", "train")
    assert src.path == DATA / "wikitext-2" / "wiki.train.tokens.gz"
    assert "from local file" in src.describe() and str(src.path) in src.describe()
    assert resolve_source("wikitext-2-v1", "valid").split == "validation"


def test_data_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("HYPROS_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="HYPROS_DATA_DIR"):
        data_dir()


def test_wikitext_articles_follow_the_headings():
    path = DATA / "wikitext-2" / "wiki.valid.tokens"
    headings = [line for line in path.read_text().splitlines() if re.match(r"^ = [^=].* = $", line)]
    docs = list(iter_documents(resolve_source("wikitext-2-v1", "validation")))
    assert len(docs) == len(headings) == 60
    assert docs[0].startswith("= Homarus gammarus =")


def test_local_folder_of_lines_and_jsonl(tmp_path):
    lines = (DATA / "multi30k" / "train.en").read_text().splitlines()[:50]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    with open(DATA / "lambada" / "lambada_test.jsonl") as f:
        records = [next(f) for _ in range(20)]
    with gzip.open(tmp_path / "validation.jsonl.gz", "wt") as f:
        f.writelines(records)
    assert list(iter_documents(resolve_source(str(tmp_path), "train"))) == [x.strip() for x in lines if x.strip()]
    texts = list(iter_documents(resolve_source(str(tmp_path), "validation")))
    assert texts == [json.loads(r)["text"] for r in records]
    with pytest.raises(ValueError, match="no field 'body'"):
        list(iter_documents(resolve_source(str(tmp_path), "validation", text_field="body")))
    with pytest.raises(FileNotFoundError, match="no 'test' split in local data folder"):
        resolve_source(str(tmp_path), "test")


def test_bpe_round_trips_real_text():
    docs = list(iter_documents(resolve_source("wikitext-2-raw-v1", "validation")))[:20]
    tok = train_bpe(docs, 1000)
    text = docs[3][:500]
    assert tok.decode(tok.encode(text).ids) == text
    with pytest.raises(ValueError, match="data.vocab_size=100 is too small"):
        train_bpe(docs, 100)


def test_prepare_caches_and_blocks_shift_by_one(cache_dir, capsys):
    settings = DataSettings(seq_len=32, vocab_size=2048)
    first = prepare_data(settings)
    capsys.readouterr()
    second = prepare_data(settings)
    assert "is already prepared" in capsys.readouterr().out
    assert len(first.train) == len(second.train) == (first.train.total_tokens - 1) // 32
    x, y = second.train.batch(np.array([0, 7]))
    assert x.shape == (2, 32) and (x[:, 1:] == y[:, :-1]).all()
    assert int(y.max()) < second.tokenizer.get_vocab_size()


def test_block_order_is_a_pure_function_and_covers_each_epoch(tmp_path):
    order = BlockOrder(10, seed=3)
    first_epoch = order.indices(0, 10)
    assert sorted(first_epoch) == list(range(10))
    assert not np.array_equal(first_epoch, order.indices(10, 10))  # reshuffled next epoch
    assert np.array_equal(BlockOrder(10, seed=3).indices(13, 4), order.indices(13, 4))


def test_too_short_token_file(tmp_path):
    np.arange(10, dtype=np.uint16).tofile(tmp_path / "shard_000000.bin")
    with pytest.raises(ValueError, match="fewer than one block of seq_len=64"):
        TokenBlocks([tmp_path / "shard_000000.bin"], 64, dtype=np.dtype(np.uint16))
