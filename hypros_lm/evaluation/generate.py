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
