"""Generation (greedy or beam search with the KV cache) and the task scores: sacreBLEU BLEU and chrF on
detokenized text, ROUGE-1/2/L with rouge-score."""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def generate(hf_model, prompts: list[list[int]], *, eos_id: int, beams: int = 1, max_new_tokens: int = 64,
             batch_size: int = 16, decode, progress: bool = True) -> list[str]:
    """Continue each prompt until EOS or max_new_tokens; left-padded batches, the model's KV cache."""
    out: list[str] = []
    starts = range(0, len(prompts), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="generate", unit="batch")
    for s in starts:
        batch = prompts[s : s + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), eos_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, p in enumerate(batch):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        gen = hf_model.generate(input_ids=ids.to(hf_model.device), attention_mask=mask.to(hf_model.device),
                                num_beams=beams, do_sample=False,
                                max_new_tokens=max_new_tokens, eos_token_id=eos_id, pad_token_id=eos_id,
                                use_cache=True)
        for row in gen[:, width:].tolist():
            if eos_id in row:
                row = row[: row.index(eos_id)]
            out.append(" ".join(decode(row).split()))  # one line per prediction
    return out


def generate_for_task(hf_model, tok, task, sources: list[str], references: list[str], *, seq_len: int, max_target: int,
                      beams: int = 1, max_new_tokens: int = 64, batch_size: int = 16,
                      progress: bool = True) -> tuple[list[str], int]:
    """A task's prompts for these sources, each leaving room for max_new_tokens within the run's seq_len
    (long sources truncated), continued by the model; returns (predictions, sources truncated)."""
    from hypros_lm.data.seq2seq import encode_pairs
    from hypros_lm.data.tokenizer import eos_id

    eos = eos_id(tok)
    enc = encode_pairs(task, tok, sources, references, seq_len=seq_len - max_new_tokens + max_target,
                       max_target_tokens=max_target)
    hyps = generate(hf_model, enc.prompt_ids, eos_id=eos, beams=beams, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, decode=tok.decode, progress=progress)
    return hyps, enc.truncated_sources


def translation_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    return {"bleu": bleu.corpus_score(hypotheses, [references]).score, "bleu_signature": str(bleu.get_signature()),
            "chrf": chrf.corpus_score(hypotheses, [references]).score, "chrf_signature": str(chrf.get_signature())}


def summary_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, hyp) for ref, hyp in zip(references, hypotheses, strict=True)]
    return {f"{k}_f": 100 * sum(s[k].fmeasure for s in scores) / max(1, len(scores)) for k in ("rouge1", "rouge2", "rougeL")}


def evaluate_task(loaded, *, task_name: str | None = None, split: str = "test", limit: int | None = None,
                  beams: int = 1, max_new_tokens: int = 64, batch_size: int = 16, perturbations: tuple[str, ...] = (),
                  seed: int = 0, out=None, progress: bool = True, device: str = "auto",
                  precision: str = "auto") -> dict[str, Any]:
    """Generate for a split of a task with a fine-tuned run (a ``LoadedRun``), score it (clean and perturbed
    sources) and write predictions-<name>.txt and metrics.json into ``out``; also the target-side token
    calibration."""
    import json
    from pathlib import Path

    from hypros_lm.data.perturb import perturb_all
    from hypros_lm.data.seq2seq import Seq2SeqBlocks, encode_pairs, get_task, load_pairs, usable_pairs
    from hypros_lm.data.tokenizer import eos_id
    from hypros_lm.evaluation.checkpoints import to_hf
    from hypros_lm.evaluation.device import choose_device
    from hypros_lm.evaluation.lm import evaluate_blocks

    where_to, dtype = choose_device(device, run_precision=loaded.settings.train.precision, precision=precision)
    from hypros_lm.tasks import require_family

    name = task_name or loaded.settings.task.name
    require_family(name, "seq2seq", "eval/generate.py")
    task = get_task(name)
    sources, references, where = load_pairs(task, split)
    keep = usable_pairs(sources, references)
    sources, references = [sources[i] for i in keep][:limit], [references[i] for i in keep][:limit]
    hf, _ = to_hf(loaded)
    hf, model = hf.to(device=where_to, dtype=dtype), loaded.model.to(device=where_to, dtype=dtype)
    tok, eos = loaded.tokenizer, eos_id(loaded.tokenizer)
    seq_len, max_target = loaded.settings.data.seq_len, loaded.settings.task.max_target_tokens
    score = translation_scores if task.kind == "translation" else summary_scores
    out = Path(out or loaded.run_dir / f"gen-{task.name}-{split}")
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"task": task.name, "data": where, "examples": len(sources), "beams": beams,
                              "max_new_tokens": max_new_tokens, "checkpoint": str(loaded.checkpoint)}
    blocks = Seq2SeqBlocks(encode_pairs(task, tok, sources, references, seq_len=seq_len, max_target_tokens=max_target),
                           seq_len, eos)
    calib = evaluate_blocks(model, blocks, -(-len(blocks) // batch_size), batch_size, keep_tokens=False, device=where_to)
    result["target_tokens"] = {k: calib[k] for k in ("loss_log", "loss_brier", "loss_spherical", "accuracy",
                                                      "ece_10", "ece_15", "perplexity", "val_tokens")}
    runs = {"clean": sources} | {spec: perturb_all(sources, spec, seed) for spec in perturbations}
    samples = {}
    for name, srcs in runs.items():
        hyps, truncated = generate_for_task(hf, tok, task, srcs, references, seq_len=seq_len, max_target=max_target,
                                            beams=beams, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                            progress=progress)
        if name == "clean":
            result["truncated_sources"] = truncated
        (out / f"predictions-{name.replace(':', '_').replace('+', '_')}.txt").write_text("\n".join(hyps) + "\n")
        result[name] = score(hyps, references)
        samples[name] = list(zip(srcs[:3], references[:3], hyps[:3], strict=True))
    main = "bleu" if task.kind == "translation" else "rougeL_f"
    for spec in perturbations:
        clean = result["clean"][main]
        result[spec]["relative_degradation"] = (clean - result[spec][main]) / clean if clean else None
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    result["_samples"] = samples
    return result
