"""Fine-tunes end to end on real data: Multi30k under the deepspeed launcher, XSum summarization."""

from __future__ import annotations

import pytest

from hypros_lm.tasks.seq2seq import get_task, load_pairs
from tests.helpers import REPO, evaluation_metrics, read_metrics, run_deepspeed, run_python

pytestmark = pytest.mark.slow
FINETUNE = REPO / "launch" / "finetune.py"
GENERATE = REPO / "eval" / "generate.py"


def _common(init, out, task, seq_len, steps):
    return ["--task", task, "--init-from", str(init), "--model", "nano", "--seq-len", str(seq_len),
            "--max-steps", str(steps), "--micro-batch-size", "4", "--loss", "hypros", "--out", str(out),
            "--train.log_every", "1", "--train.eval_every", str(steps), "--train.eval_batches", "2",
            "--task.max_target_tokens", "24"]


def test_multi30k_finetune_generate_and_score(stage_runs, cache_dir, tmp_path):
    out = tmp_path / "ft"
    proc = run_deepspeed([*_common(stage_runs["zero2"], out, "multi30k-en-de", 96, 3), "--task.train_limit", "2000"],
                         cache_dir, script=FINETUNE)
    assert "init: weights from" in proc.stdout and "multi30k/train.en" in proc.stdout
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]
    gen = run_python([str(out), "--split", "test", "--limit", "8", "--max-new-tokens", "12",
                      "--perturb", "swap:0.1"], cache_dir, script=GENERATE)
    assert "sacreBLEU signatures: nrefs:1" in gen.stdout
    metrics = evaluation_metrics(out / "gen-multi30k-en-de-test")
    hyps = (out / "gen-multi30k-en-de-test" / "predictions-clean.txt").read_text().splitlines()
    refs = load_pairs(get_task("multi30k-en-de"), "test")[1][:8]
    assert len(hyps) == 8 and metrics["examples"] == 8
    from sacrebleu.metrics import BLEU, CHRF

    assert metrics["clean"]["bleu"] == pytest.approx(BLEU().corpus_score(hyps, [refs]).score)
    assert metrics["clean"]["chrf"] == pytest.approx(CHRF().corpus_score(hyps, [refs]).score)
    assert "relative_degradation" in metrics["swap:0.1"]
    assert metrics["target_tokens"]["val_tokens"] > 0 and 0 <= metrics["target_tokens"]["ece_10"] <= 1
    # the swapped sources' target-token NLL: scored given those sources, against the full logits' cross-entropy
    swapped = metrics["swap:0.1"]["target_tokens"]["loss_log"]
    assert swapped == pytest.approx(_naive_target_nll(out, "swap:0.1", limit=8), rel=1e-5)
    assert swapped != pytest.approx(metrics["target_tokens"]["loss_log"], rel=1e-6)


def _naive_target_nll(run_dir, perturbation: str, *, limit: int) -> float:
    """Mean cross-entropy of the Multi30k test references' tokens given perturbed sources, from the exported
    model's full logits (no fused head, no blocks)."""
    import torch
    import torch.nn.functional as F

    from hypros_lm.data.perturb import perturb_all
    from hypros_lm.runs import load_run, to_hf
    from hypros_lm.tasks.seq2seq import encode_pairs

    loaded = load_run(run_dir)
    hf, _ = to_hf(loaded)
    task = get_task("multi30k-en-de")
    sources, references = (x[:limit] for x in load_pairs(task, "test")[:2])
    enc = encode_pairs(task, loaded.tokenizer, perturb_all(sources, perturbation, 0), references,
                       seq_len=loaded.settings.data.seq_len, max_target_tokens=loaded.settings.task.max_target_tokens)
    total, count = 0.0, 0
    with torch.no_grad():
        for prompt, target in zip(enc.prompt_ids, enc.target_ids, strict=True):
            ids = torch.tensor([prompt + target])
            logits = hf(input_ids=ids[:, :-1]).logits[0, len(prompt) - 1:].double()
            total += float(F.cross_entropy(logits, ids[0, len(prompt):], reduction="sum"))
            count += len(target)
    return total / count


def test_xsum_summarization_from_an_exported_model_and_rouge(stage_runs, cache_dir, tmp_path):
    from hypros_lm.runs import export_hf

    hf = export_hf(stage_runs["zero2"], tmp_path / "hf")  # start from a Hugging Face folder this time
    out = tmp_path / "sum"
    proc = run_python(_common(hf, out, "xsum", 256, 2), cache_dir, script=FINETUNE)
    assert "sources truncated" in proc.stdout and f"init: weights from {hf}" in proc.stdout
    run_python([str(out), "--limit", "4", "--max-new-tokens", "12"], cache_dir, script=GENERATE)
    metrics = evaluation_metrics(out / "gen-xsum-test")
    hyps = (out / "gen-xsum-test" / "predictions-clean.txt").read_text().splitlines()
    refs = load_pairs(get_task("xsum"), "test")[1][:4]
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = 100 * sum(scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps, strict=True)) / 4
    assert metrics["clean"]["rougeL_f"] == pytest.approx(expected)
    assert "sample" in metrics["data"]


def test_finetune_needs_a_task(cache_dir, tmp_path):
    proc = run_python(["--out", str(tmp_path)], cache_dir, script=FINETUNE, check=False)
    assert proc.returncode == 2 and "needs a task: --task multi30k-en-de" in proc.stderr


def test_finetune_from_scratch_trains_and_caches_its_tokenizer(cache_dir, tmp_path):
    args = ["--task", "multi30k-en-de", "--max-steps", "2", "--seq-len", "96", "--data.vocab_size", "1500",
            "--train.log_every", "1"]
    first = run_python([*args, "--out", str(tmp_path / "a")], cache_dir, script=FINETUNE)
    second = run_python([*args, "--out", str(tmp_path / "b")], cache_dir, script=FINETUNE)
    assert "trained byte-level BPE (1500 tokens)" in first.stdout and "cached BPE" in second.stdout
    assert [r["loss"] for r in read_metrics(tmp_path / "a")] == [r["loss"] for r in read_metrics(tmp_path / "b")]
