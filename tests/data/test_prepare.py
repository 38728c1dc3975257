"""Corpus preparation on real text (IMDb's 25,000 test reviews, WikiText-2): shards identical whatever
the workers or ranks, resumable after SIGKILL, trained on like the small-corpus path, bad input refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hypros_lm.data import DataSettings, PreparedCorpus, data_dir, iter_documents, prepare_corpus, resolve_source
from hypros_lm.data.shards import TokenBlocks
from hypros_lm.data.tokenizer import eos_id
from tests import helpers
from tests.helpers import REPO, TINY_RUN, free_port, read_metrics, run_python

pytestmark = pytest.mark.skipif(data_dir() is None, reason="needs the offline data folder ../shared/data")

PREPARE = REPO / "launch" / "prepare_data.py"
IMDB = ["--data", "imdb", "--splits", "train=test", "--data.vocab_size", "2048", "--data.tokenizer_sample_chars", "1000000",
        "--data.docs_per_shard", "1500", "--no-progress"]
IMDB_SETTINGS = DataSettings(vocab_size=2048, tokenizer_sample_chars=1_000_000, docs_per_shard=1500,
                                token_budget=2_000_000)


def imdb() -> dict:
    return {"train": resolve_source("imdb", "test")}


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "train").glob("shard_*"))}


@pytest.fixture(scope="module")
def imdb_one_worker(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imdb-1")
    return prepare_corpus(out, imdb(), IMDB_SETTINGS, workers=1, progress=False, log=lambda _m: None)


def test_shards_from_one_and_two_workers_equal_a_plain_tokenization(imdb_one_worker, tmp_path):
    two = prepare_corpus(tmp_path / "imdb-2", imdb(), IMDB_SETTINGS, workers=2, progress=False, log=lambda _m: None)
    assert shard_bytes(two) == shard_bytes(imdb_one_worker)
    assert (two / "manifest.json").read_text() == (imdb_one_worker / "manifest.json").read_text()

    corpus = PreparedCorpus(imdb_one_worker)
    tok, info = corpus.tokenizer, corpus.manifest["splits"]["train"]
    reference, eos = [], eos_id(tok)  # one document at a time, the way anyone would
    for doc in iter_documents(resolve_source("imdb", "test")):
        reference += tok.encode(doc).ids + [eos]
        if len(reference) >= info["tokens_in_shards"]:
            break
    blocks = corpus.blocks("train", 64)
    assert info["tokens"] == blocks.total_tokens == 2_000_000  # the budget cuts the last shard's tokens
    assert np.array_equal(blocks.tokens(0, info["tokens_in_shards"]), np.array(reference[:info["tokens_in_shards"]]))
    assert info["documents"] == len(info["shards"]) * 1500
    assert corpus.manifest["dtype"] == "uint16"  # 2 bytes per token for vocabularies up to 65,536
    assert sum(r["bytes"] for r in info["shards"]) == 2 * info["tokens_in_shards"]
    assert not list((imdb_one_worker / "train").glob("shard_*.bin"))[len(info["shards"]):]  # past the budget: removed


def test_blocks_span_shard_boundaries(imdb_one_worker):
    corpus = PreparedCorpus(imdb_one_worker)
    blocks = corpus.blocks("train", 100)
    first_end = int(blocks.starts[1])
    block = first_end // 100  # the block that straddles the end of shard 0
    whole = np.concatenate([np.asarray(s) for s in blocks.shards])
    x, y = blocks.batch(np.array([block]))
    assert block * 100 < first_end < block * 100 + 101
    assert np.array_equal(x[0].numpy(), whole[block * 100: block * 100 + 100])
    assert np.array_equal(y[0].numpy(), whole[block * 100 + 1: block * 100 + 101])


def test_a_preparation_killed_with_sigkill_resumes_to_identical_shards(tmp_path, cache_dir):
    args = [*IMDB, "--workers", "2", "--data.token_budget", "4000000"]
    env = helpers.test_env(cache_dir)
    full = tmp_path / "full"
    subprocess.run([sys.executable, str(PREPARE), *args, "--out", str(full)], env=env, check=True, cwd=REPO,
                   capture_output=True, timeout=300)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, str(PREPARE), *args, "--out", str(cut)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while len(list((cut / "train").glob("shard_*.json"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the reader and its workers, mid-shard
    proc.wait()
    finished = sorted((cut / "train").glob("shard_*.json"))
    assert 2 <= len(finished) < 8 and not (cut / "manifest.json").exists()
    for record_file in finished:  # whatever looks finished is finished
        record = json.loads(record_file.read_text())
        assert (cut / "train" / record["file"]).stat().st_size == record["bytes"]
    done = subprocess.run([sys.executable, str(PREPARE), *args, "--out", str(cut)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert shard_bytes(cut) == shard_bytes(full)
    assert (cut / "manifest.json").read_text() == (full / "manifest.json").read_text()
    assert not list((cut / "train").glob(".shard_*"))  # no leftover partial shard


@pytest.mark.slow
def test_two_ranks_under_the_deepspeed_launcher_equal_one_process(imdb_one_worker, tmp_path, cache_dir):
    out = tmp_path / "ranks"
    deepspeed = Path(sys.executable).parent / "deepspeed"
    cmd = [str(deepspeed), "--num_gpus", "2", "--master_port", str(free_port()), str(PREPARE), *IMDB,
           "--data.token_budget", "2000000", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=helpers.test_env(cache_dir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rank 0 of 2" in proc.stdout
    assert shard_bytes(out) == shard_bytes(imdb_one_worker)
    assert (out / "manifest.json").read_text() == (imdb_one_worker / "manifest.json").read_text()


@pytest.fixture(scope="module")
def wikitext_folder(tmp_path_factory, cache_dir) -> Path:
    """WikiText-2 prepared by the command, in shards of 50 articles (13 train shards), vocabulary as TINY_RUN."""
    out = tmp_path_factory.mktemp("wt2") / "prepared"
    run_python(["--data", "wikitext-2-v1", "--data.vocab_size", "2048", "--data.docs_per_shard", "50", "--no-progress",
                "--out", str(out)], cache_dir, script=PREPARE)
    return out


@pytest.mark.slow
def test_training_on_a_prepared_folder_and_resuming_across_shards(wikitext_folder, cache_dir, tmp_path):
    """The same losses as the small-corpus path (which runs the same preparer in-process, in one shard);
    a run cut at step 3 and resumed reproduces the uninterrupted one over blocks that cross shards."""
    args = [*TINY_RUN, "--max-steps", "6", "--train.eval_every", "3", "--train.save_every", "3"]
    run_python([*args, "--out", str(tmp_path / "small")], cache_dir)
    run_python([*args, "--data", str(wikitext_folder), "--out", str(tmp_path / "full")], cache_dir)
    run_python([*args, "--data", str(wikitext_folder), "--out", str(tmp_path / "cut"), "--train.stop_at", "3"], cache_dir)
    run_python([*args, "--data", str(wikitext_folder), "--out", str(tmp_path / "cut"), "--resume"], cache_dir)
    small, full, resumed = (read_metrics(tmp_path / name) for name in ("small", "full", "cut"))
    assert len(json.loads((wikitext_folder / "manifest.json").read_text())["splits"]["train"]["shards"]) > 10
    for key in ("loss", "loss_log", "loss_brier", "grad_norm"):
        assert [r[key] for r in full] == [r[key] for r in small], key
        assert [r[key] for r in resumed] == [r[key] for r in full], key
    assert [r["loss"] for r in read_metrics(tmp_path / "cut", "val")] == [r["loss"] for r in read_metrics(tmp_path / "full", "val")]


# ---------------------------------------------------------------- bad input, each before heavy work


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_a_truncated_missing_or_corrupted_shard_is_named(imdb_one_worker, tmp_path):
    folder = copy_of(imdb_one_worker, tmp_path)
    shard = folder / "train" / "shard_000001.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-2])
    with pytest.raises(ValueError, match="shard_000001.bin holds .* bytes, the manifest says .*truncated"):
        PreparedCorpus(folder)
    shard.write_bytes(data[:-2] + bytes([data[-2] ^ 1, data[-1]]))
    with pytest.raises(ValueError, match="shard_000001.bin: sha256 differs"):
        PreparedCorpus(folder)
    PreparedCorpus(folder, verify_sha256=False)  # sizes only
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="shard_000001.bin is missing"):
        PreparedCorpus(folder)


def test_an_unknown_format_version_is_refused(imdb_one_worker, tmp_path):
    folder = copy_of(imdb_one_worker, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99; this hypros-lm reads version 1"):
        PreparedCorpus(folder)


def test_a_run_with_another_tokenizer_or_a_too_small_vocabulary_stops(imdb_one_worker, tmp_path, cache_dir):
    other = tmp_path / "other.json"
    prepare_corpus(tmp_path / "other", imdb(), DataSettings(vocab_size=1024, tokenizer_sample_chars=200_000,
                   docs_per_shard=1500, token_budget=100_000), progress=False, log=lambda _m: None)
    shutil.copy(tmp_path / "other" / "tokenizer.json", other)
    proc = run_python([*TINY_RUN, "--data", str(imdb_one_worker), "--data.val_split", "train", "--data.tokenizer",
                       str(other), "--out", str(tmp_path / "run")], cache_dir, check=False)
    assert proc.returncode == 2 and "differs from the tokenizer" in proc.stderr
    folder = copy_of(imdb_one_worker, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "max_token_id": 5000}))
    proc = run_python([*TINY_RUN, "--data", str(folder), "--data.val_split", "train", "--out", str(tmp_path / "run2")],
                      cache_dir, check=False)
    assert proc.returncode == 2 and "holds token id 5000, outside the model's vocabulary of 2048" in proc.stderr


def test_a_budget_larger_than_the_source_says_how_many_tokens_it_had(tmp_path):
    with pytest.raises(ValueError, match=r"larger than the source can hold: .*wiki.valid.raw has 1,146,846 bytes"):
        prepare_corpus(tmp_path / "a", {"train": resolve_source("wikitext-2-raw-v1", "validation")},
                       DataSettings(vocab_size=1024, token_budget=10**9), progress=False, log=lambda _m: None)
    assert not (tmp_path / "a" / "tokenizer.json").exists()  # refused before any work
    with pytest.raises(ValueError, match=r"larger than the source: imdb .* has ([\d,]+) tokens\. Rerun with") as err:
        prepare_corpus(tmp_path / "b", imdb(), DataSettings(vocab_size=1024, tokenizer_sample_chars=200_000,
                       docs_per_shard=5000, token_budget=10**8), progress=False, log=lambda _m: None)
    kept = [json.loads(p.read_text()) for p in (tmp_path / "b" / "train").glob("shard_*.json")]
    assert f"has {sum(r['tokens'] for r in kept):,} tokens" in str(err.value)
    assert sum(r["documents"] for r in kept) == 25_000  # all of it, kept for a rerun
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_an_unwritable_output_or_another_preparation_in_it_is_refused(imdb_one_worker, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="is not writable"):
        prepare_corpus(blocker / "out", imdb(), IMDB_SETTINGS, progress=False, log=lambda _m: None)
    with pytest.raises(FileExistsError, match="already holds a prepared corpus of other sources or settings"):
        prepare_corpus(imdb_one_worker, imdb(), DataSettings(vocab_size=4096), progress=False, log=lambda _m: None)


def test_a_large_hub_corpus_is_never_tokenized_in_the_training_job(tmp_path, cache_dir, monkeypatch):
    env = {k: v for k, v in helpers.test_env(cache_dir).items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HYPROS_ONLINE="1", MASTER_PORT=str(free_port()))
    proc = subprocess.run([sys.executable, str(REPO / "launch" / "pretrain.py"), "--data", "pile", "--data.token_budget",
                           "1000000000", "--out", str(tmp_path / "run")], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "is a large corpus" in proc.stderr
    assert "python launch/prepare_data.py --data pile --data.vocab_size 8192 --data.token_budget 1000000000" in proc.stderr


def test_token_blocks_over_uint32_shards(tmp_path):
    ids = np.arange(70_000, 70_500, dtype=np.uint32)
    ids[:250].tofile(tmp_path / "a.bin")
    ids[250:].tofile(tmp_path / "b.bin")
    blocks = TokenBlocks([tmp_path / "a.bin", tmp_path / "b.bin"], 99, dtype=np.dtype(np.uint32))
    x, y = blocks.batch(np.array([2]))
    assert x[0].tolist() == list(range(70_198, 70_297)) and y[0].tolist() == list(range(70_199, 70_298))
