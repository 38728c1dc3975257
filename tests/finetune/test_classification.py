"""Classification: the label-set objective against a naive reference (value and gradient), metrics against
scikit-learn, real SST-2/AG News/IMDb loading and its bad-input errors, deterministic perturbations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score

from hypros_lm.data.perturb import SENTIMENT_TRIGGER, perturb_all
from hypros_lm.data.tokenizer import train_bpe
from hypros_lm.metrics.calibration import expected_calibration_error
from hypros_lm.metrics.classification import classification_metrics
from hypros_lm.scoring import ScoringOptions
from hypros_lm.scoring.head import score_hidden
from hypros_lm.tasks.classification import Examples, check_examples, encode_examples, get_task, label_tokens, load_examples
from hypros_lm.tasks.seq2seq import IGNORE


@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("bounded", ["brier", "spherical"])
def test_label_set_objective_matches_a_naive_reference(lam, bounded):
    """The head scoring only the label columns = a softmax over the label words' logits, by autograd."""
    torch.manual_seed(0)
    d, vocab, columns = 16, 97, torch.tensor([41, 7, 88, 13])
    weight = torch.randn(vocab, d, requires_grad=True)
    hidden = torch.randn(3, 11, d, requires_grad=True)
    targets = torch.full((3, 11), IGNORE)
    gold = torch.tensor([2, 0, 3])
    targets[torch.arange(3), torch.tensor([10, 4, 7])] = columns[gold]  # one label token per row, as the task makes
    out = score_hidden(hidden, weight, targets, lam, options=ScoringOptions(chunk_size=8), bounded=bounded,
                       score_columns=columns)
    g_hidden, g_weight = torch.autograd.grad(out.loss, (hidden, weight))

    h64, w64 = hidden.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    scored = targets != IGNORE
    z = h64[scored] @ w64[columns].T  # (3, C): label logits only
    p = torch.softmax(z, dim=-1)
    onehot = F.one_hot(gold, len(columns)).double()
    log = -torch.log_softmax(z, dim=-1)[torch.arange(3), gold]
    brier = ((p - onehot) ** 2).sum(-1)
    spherical = 1 - p[torch.arange(3), gold] / p.norm(dim=-1)
    reference = ((1 - lam) * log + lam * (brier if bounded == "brier" else spherical)).mean()
    r_hidden, r_weight = torch.autograd.grad(reference, (h64, w64))
    assert out.loss.item() == pytest.approx(reference.item(), abs=1e-5)
    assert out.log.item() == pytest.approx(log.mean().item(), abs=1e-5)
    torch.testing.assert_close(g_hidden.double(), r_hidden, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(g_weight.double(), r_weight, atol=1e-6, rtol=1e-4)
    assert g_weight[[c for c in range(vocab) if c not in columns.tolist()]].abs().max() == 0  # other rows untouched


def test_label_set_head_refuses_a_target_outside_the_labels():
    with pytest.raises(ValueError, match="not among the head's score_columns"):
        score_hidden(torch.randn(1, 2, 4), torch.randn(10, 4), torch.tensor([[3, IGNORE]]), 0.5,
                     score_columns=torch.tensor([1, 2]))


def test_metrics_against_scikit_learn_and_the_formulas():
    rng = np.random.default_rng(0)
    probs = torch.softmax(torch.as_tensor(rng.normal(size=(200, 4)) * 2), dim=-1)
    gold = torch.as_tensor(rng.integers(0, 4, 200))
    m = classification_metrics(probs, gold)
    predicted = probs.argmax(1).numpy()
    assert m["class_accuracy"] == pytest.approx(accuracy_score(gold.numpy(), predicted))
    assert m["macro_f1"] == pytest.approx(f1_score(gold.numpy(), predicted, average="macro", labels=[0, 1, 2, 3]))
    onehot = np.eye(4)[gold.numpy()]
    assert m["class_brier"] == pytest.approx(((probs.numpy() - onehot) ** 2).sum(1).mean())
    assert m["class_nll"] == pytest.approx(-np.log(probs.numpy()[np.arange(200), gold.numpy()]).mean())
    conf = probs.max(1).values
    assert m["class_ece_10"] == pytest.approx(expected_calibration_error(conf, (probs.argmax(1) == gold).float(), 10))
    assert sum(row["count"] for row in m["class_reliability_10"]) == 200


def test_real_splits_load_with_their_descriptions():
    sst = load_examples(get_task("sst2"), "validation")
    assert len(sst.texts) == 872 and set(sst.labels) == {0, 1} and "results are on dev" in sst.where
    assert len(load_examples(get_task("sst2"), "train").texts) == 67_349
    ag_train, ag_val = load_examples(get_task("ag_news"), "train"), load_examples(get_task("ag_news"), "validation")
    assert (len(ag_train.texts), len(ag_val.texts)) == (6_600, 1_000) and "seeded split" in ag_val.where
    assert not set(ag_train.texts) & set(ag_val.texts)  # disjoint parts of the one test set
    assert set(ag_val.labels) == {0, 1, 2, 3} and "\\" not in " ".join(ag_val.texts)
    imdb = load_examples(get_task("imdb"), "test")
    assert len(imdb.texts) == 25_000 and sum(imdb.labels) == 12_500 and "<br />" not in " ".join(imdb.texts[:500])


def test_bad_inputs_are_named():
    task = get_task("sst2")
    with pytest.raises(FileNotFoundError, match="task 'sst2' has no 'test' split offline; offline it has"):
        load_examples(task, "test")
    with pytest.raises(ValueError, match="row 1 has label 2, outside sst2's label set 0..1"):
        check_examples(task, ["good", "bad"], [1, 2], "here")
    with pytest.raises(ValueError, match="row 0 has an empty text"):
        check_examples(task, ["  ", "bad"], [1, 0], "here")
    sst = load_examples(task, "validation")
    tok = train_bpe(sst.texts, 300)
    with pytest.raises(ValueError, match=r"label word ' negative' of task sst2 is \d+ tokens .* --task.label_words"):
        label_tokens(task, tok)


def test_prompts_end_where_the_label_is_predicted():
    task = get_task("sst2")
    sst = load_examples(task, "validation")
    tok = train_bpe(sst.texts, 400)
    tokens = label_tokens(task, tok, (" the", " a"))  # one token each in any English BPE
    examples = Examples(sst.texts[:5], sst.labels[:5], "dev")
    blocks = encode_examples(task, tok, examples, seq_len=24, tokens=tokens, pad_id=0)
    x, y = blocks.batch(range(5))
    for row in range(5):
        scored = (y[row] != IGNORE).nonzero().flatten().tolist()
        assert scored == [blocks.positions[row]]  # exactly one scored position: the label's
        assert y[row, scored[0]].item() == tokens[examples.labels[row]]
        assert tok.decode(x[row, : scored[0] + 1].tolist()).rstrip().endswith("Sentiment:")
    assert blocks.encoded.truncated_sources >= 1  # seq_len 24 cuts long reviews


def test_perturbations_are_deterministic_per_seed():
    texts = load_examples(get_task("sst2"), "validation").texts[:50]
    a, b, c = (perturb_all(texts, "swap:0.05", s) for s in (1, 1, 2))
    assert a == b and a != c and a != texts
    ten = perturb_all(texts, "swap:0.1", 1)
    assert sum(x != y for x, y in zip(ten, texts, strict=True)) > sum(x != y for x, y in zip(a, texts, strict=True))
    assert all(t.startswith(SENTIMENT_TRIGGER + " ") for t in perturb_all(texts, "trigger:prefix", 0))
    assert all(t.endswith(" " + SENTIMENT_TRIGGER) for t in perturb_all(texts, "trigger:suffix", 0))


def test_entry_points_name_the_tool_for_another_family():
    from hypros_lm.tasks import require_family

    with pytest.raises(ValueError, match="eval/generate.py evaluates seq2seq tasks, but task 'sst2' is classification: "
                                         "use eval/classify.py"):
        require_family("sst2", "seq2seq", "eval/generate.py")
    with pytest.raises(ValueError, match="but pretraining is pretrain: use eval/lm.py"):
        require_family(None, "classification", "eval/classify.py")
    assert require_family("xsum", "seq2seq", "eval/generate.py").name == "seq2seq"


def test_a_tokenizer_trained_from_scratch_keeps_the_label_words_whole():
    """SST-2's own BPE splits ' negative'; a from-scratch fine-tune adds it as a token of its own."""
    task = get_task("sst2")
    texts = load_examples(task, "validation").texts
    plain = train_bpe(texts, 1000)
    assert len(plain.encode(" negative").ids) > 1
    tok = train_bpe(texts, 1000, whole_words=task.label_words)
    ids = label_tokens(task, tok)
    assert tok.get_vocab_size() == plain.get_vocab_size() + sum(len(plain.encode(w).ids) > 1 for w in task.label_words)
    text = "Review: a negative review\nSentiment: negative"
    assert tok.decode(tok.encode(text).ids) == text and tok.encode(text).ids[-1] == ids[0]
