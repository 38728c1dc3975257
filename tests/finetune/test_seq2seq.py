"""Seq2seq data on the real copies: prompts, target-only scoring, truncation, bad files; perturbations."""

from __future__ import annotations

import random
import shutil

import pytest
import torch
import torch.nn.functional as F

from hypros_lm.data import data_dir, train_bpe
from hypros_lm.data.perturb import parse, perturb_all
from hypros_lm.scoring import fused_linear_score
from hypros_lm.tasks.seq2seq import IGNORE, Seq2SeqBlocks, detokenize, encode_pairs, get_task, load_pairs

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="needs the offline data folder ../shared/data")


@pytest.fixture(scope="module")
def multi30k():
    task = get_task("multi30k-en-de")
    sources, targets, _ = load_pairs(task, "validation")
    tok = train_bpe(sources + targets, 1000)
    return task, sources[:64], targets[:64], tok


def test_only_target_tokens_are_scored(multi30k):
    task, sources, targets, tok = multi30k
    enc = encode_pairs(task, tok, sources, targets, seq_len=96, max_target_tokens=40)
    blocks = Seq2SeqBlocks(enc, 96, pad_id=0)
    x, y = blocks.batch(list(range(8)))
    for row in range(8):
        scored = y[row][y[row] != IGNORE].tolist()
        assert scored == enc.target_ids[row]  # exactly the target (and its EOS), in order
        first = len(enc.prompt_ids[row]) - 1
        assert (y[row, :first] == IGNORE).all()  # no source or prompt token is a target
        assert x[row, first].item() == enc.prompt_ids[row][-1]  # the last prompt token predicts the first target
    # the fused loss equals the mean NLL over target positions alone
    torch.manual_seed(0)
    h, w = torch.randn(8, 96, 16, dtype=torch.float64), torch.randn(tok.get_vocab_size(), 16, dtype=torch.float64)
    loss = fused_linear_score(h, w, y, lam=0.0).loss
    mask = y != IGNORE
    expected = F.cross_entropy((h @ w.T)[mask], y[mask])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_long_sources_are_truncated_and_counted():
    task = get_task("xsum")
    sources, targets, where = load_pairs(task, "train")
    assert len(sources) == 800 and "[0:800]" in where and "sample" in where
    assert sources[219] == ""  # the sample's one record without a document (NaN in the file)
    tok = train_bpe(sources[:50] + targets[:50], 1000)
    assert encode_pairs(task, tok, sources[210:230], targets[210:230], seq_len=128, max_target_tokens=32).empty_skipped == 1
    enc = encode_pairs(task, tok, sources[:20], targets[:20], seq_len=128, max_target_tokens=32)
    assert enc.truncated_sources > 0
    assert all(len(p) + len(t) <= 128 for p, t in zip(enc.prompt_ids, enc.target_ids, strict=True))
    assert all(tok.decode(p).endswith("Summary:") for p in enc.prompt_ids)  # the prompt's tail survives truncation


def test_tokenized_copies_are_detokenized():
    sources, targets, _ = load_pairs(get_task("wmt14-en-de"), "test")
    assert len(sources) == 2737
    assert "&apos;" not in " ".join(targets) and " ." not in targets[1]
    assert detokenize("It &apos;s here .", "en") == "It's here."


def test_misaligned_files_and_empty_lines(tmp_path, monkeypatch):
    folder = tmp_path / "multi30k"
    folder.mkdir()
    en = (DATA / "multi30k" / "val.en").read_text().splitlines()[:10]
    de = (DATA / "multi30k" / "val.de").read_text().splitlines()[:10]
    (folder / "val.en").write_text("\n".join(en) + "\n")
    (folder / "val.de").write_text("\n".join(de[:9]) + "\n")
    monkeypatch.setenv("HYPROS_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="has 10 lines but .* has 9"):
        load_pairs(get_task("multi30k-en-de"), "validation")
    en[3] = ""
    (folder / "val.en").write_text("\n".join(en) + "\n")
    shutil.copy(DATA / "multi30k" / "val.de", folder / "val.de")
    (folder / "val.de").write_text("\n".join(de) + "\n")
    task = get_task("multi30k-en-de")
    sources, targets, _ = load_pairs(task, "validation")
    enc = encode_pairs(task, train_bpe(sources + targets, 300), sources, targets, seq_len=128, max_target_tokens=40)
    assert enc.empty_skipped == 1 and len(enc.prompt_ids) == 9


def test_unknown_task_and_missing_offline_split():
    with pytest.raises(ValueError, match="unknown task 'squad'"):
        get_task("squad")
    with pytest.raises(FileNotFoundError, match=r"no 'train' split offline; offline it has \['test', 'validation'\]"):
        load_pairs(get_task("iwslt15-vi-en"), "train")


@pytest.fixture(scope="module")
def sentences():
    return [s for s in (DATA / "multi30k" / "test.en").read_text().splitlines() if s.strip()]


def _swapped_positions(orig: list[str], new: list[str]) -> int:
    i = count = 0
    while i < len(orig) - 1:
        if orig[i] != orig[i + 1] and new[i] == orig[i + 1] and new[i + 1] == orig[i]:
            count, i = count + 1, i + 2
        else:
            i += 1
    return count


@pytest.mark.parametrize("rate", [0.05, 0.1])
def test_word_swap_rate_on_real_sentences(sentences, rate):
    out = perturb_all(sentences, f"swap:{rate}", seed=1)
    swaps = sum(_swapped_positions(s.split(), o.split()) for s, o in zip(sentences, out, strict=True))
    positions = sum(len(s.split()) - 1 for s in sentences)
    expected = rate / (1 + rate)  # each position with probability rate, a swapped pair never swapped again
    assert swaps / positions == pytest.approx(expected, abs=0.012)
    assert all(sorted(s.split()) == sorted(o.split()) for s, o in zip(sentences, out, strict=True))


def test_typo_rate_and_determinism_on_real_sentences(sentences):
    out = perturb_all(sentences, "typo:0.1", seed=3)
    words = [(a, b) for s, o in zip(sentences, out, strict=True) for a, b in zip(s.split(), o.split(), strict=True)
             if len(a) >= 2]
    changed = sum(a != b for a, b in words) / len(words)
    assert changed == pytest.approx(0.099, abs=0.01)  # 0.1 less the rare typos that leave a word unchanged; ±3σ
    assert perturb_all(sentences, "typo:0.1", seed=3) == out
    assert perturb_all(sentences, "typo:0.1", seed=4) != out
    combo = parse("swap:0.05+prefix")(sentences[0], random.Random(0))
    assert combo.startswith("Ignore the following sentence")
    with pytest.raises(ValueError, match="unknown perturbation 'shuffle'"):
        parse("shuffle")
    with pytest.raises(ValueError, match="needs a rate"):
        parse("swap")
