"""Language-model evaluation over token blocks: every score, perplexity and calibration, sharded over ranks.

The model is called as ``model(x, y, mode="tokens")`` so the scores come from the fused head's own
forward (ZeRO-3 gathers its weight there) and no N×V tensor is built.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from hypros_lm.data import TokenBlocks, resolve_source
from hypros_lm.data.pipeline import prepared_blocks
from hypros_lm.evaluation.figures import entropy_histogram, reliability_diagram
from hypros_lm.metrics import BinSums, bin_sums, ece_from_bins, expected_calibration_error, mce_from_bins, reliability_table
from hypros_lm.runs import EVALUATION_FILE
from hypros_lm.scoring.scores import DEFAULT_BOUNDED, Score, bounded_score, scores_in_use

ECE_BINS = (10, 15)  # 10 as the study asks, 15 as in Guo et al. (2017)


def evaluate_blocks(model, blocks: TokenBlocks, batches: int, batch_size: int, **options: Any) -> dict[str, Any]:
    """Token-weighted means of each score over ``batches`` micro-batches per rank, plus the combined loss at λ,
    perplexity and ECE/MCE from all-reduced bin sums. ``options``: lam, bounded, rank, world, device, progress."""
    return _evaluate(model, blocks, batches, batch_size, keep_tokens=False, **options)[0]


def evaluate_tokens(model, blocks: TokenBlocks, batches: int, batch_size: int,
                    **options: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """[`evaluate_blocks()`][hypros_lm.evaluation.lm.evaluate_blocks] with adaptive ECE and the reliability table, and
    this rank's per-token confidence, correctness and entropy (for histograms)."""
    return _evaluate(model, blocks, batches, batch_size, keep_tokens=True, **options)


@torch.no_grad()
def _evaluate(
    model, blocks: TokenBlocks, batches: int, batch_size: int, *, lam: float = 0.0, bounded: str | Score = DEFAULT_BOUNDED,
    rank: int = 0, world: int = 1, device: torch.device | str = "cpu", keep_tokens: bool, progress: bool = False,
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    was_training = model.training
    model.eval()
    bounded = bounded_score(bounded)
    reported = tuple(s.key for s in scores_in_use(bounded))
    keys = ("log", *reported, "entropy", "correct")
    sums = torch.zeros(len(keys) + 1, dtype=torch.float64, device=device)
    bins = {n: BinSums(*(torch.zeros(n, dtype=torch.float64, device=device) for _ in range(3))) for n in ECE_BINS}
    kept: dict[str, list[torch.Tensor]] = {"confidence": [], "correct": [], "entropy": []}
    steps = range(batches)
    if progress and rank == 0:
        from tqdm import tqdm

        steps = tqdm(steps, desc="eval", unit="batch")
    for b in steps:
        first = (b * world + rank) * batch_size
        x, y = blocks.batch([i % len(blocks) for i in range(first, first + batch_size)])
        tok = model(x.to(device), y.to(device), mode="tokens", bounded=bounded)
        sums += torch.stack([*(tok[k].double().sum() for k in keys), torch.tensor(float(tok["log"].numel()))])
        for n in ECE_BINS:
            bins[n] = bins[n] + bin_sums(tok["confidence"], tok["correct"], n)
        if keep_tokens:
            for k in kept:
                kept[k].append(tok[k].float().cpu())
    if dist.is_initialized() and world > 1:
        dist.all_reduce(sums)
        for n in ECE_BINS:
            stacked = bins[n].stacked()
            dist.all_reduce(stacked)
            bins[n] = BinSums.from_stacked(stacked)
    model.train(was_training)
    n_tok = max(1.0, float(sums[-1]))
    means = {k: float(sums[i]) / n_tok for i, k in enumerate(keys)}
    result: dict[str, Any] = {
        "loss": (1 - lam) * means["log"] + lam * means[bounded.key],
        "loss_log": means["log"], **{f"loss_{k}": means[k] for k in reported},
        "accuracy": means["correct"], "entropy": means["entropy"],
        "perplexity": math.exp(min(means["log"], 700.0)), "val_tokens": int(sums[-1]),
        **{f"ece_{n}": ece_from_bins(bins[n]) for n in ECE_BINS},
        "mce_10": mce_from_bins(bins[10]),
    }
    if not keep_tokens:
        return result, None
    tokens = {k: torch.cat(v) if v else torch.zeros(0) for k, v in kept.items()}
    result["ece_adaptive_10"] = expected_calibration_error(tokens["confidence"], tokens["correct"], 10, adaptive=True)
    result["reliability_10"] = reliability_table(bins[10])
    return result, tokens


def rolling_windows(ids: list[int], *, prefix_id: int, max_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) windows that score a whole text after ``prefix_id``: the text is predicted in chunks
    of ``max_len`` tokens, each from the ``max_len`` tokens before it (the last chunk too, so it keeps a full
    context; its context positions are ignored, -100). These are lm-eval's ``loglikelihood_rolling`` windows."""
    tokens = torch.tensor([prefix_id, *ids], dtype=torch.long)
    windows = []
    for start in range(0, len(ids), max_len):
        end = min(start + max_len, len(ids))  # predict ids[start:end] = tokens[start + 1 : end + 1]
        first = max(0, end - max_len)
        targets = tokens[first + 1 : end + 1].clone()
        targets[: start - first] = -100  # context only
        windows.append((tokens[first:end], targets))
    return windows


@torch.no_grad()
def window_nll(model, window: tuple[torch.Tensor, torch.Tensor], device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-token NLL (float64) of one window's scored targets, from the fused per-token pass."""
    inputs, targets = window
    return model(inputs[None].to(device), targets[None].to(device), mode="tokens")["log"].double().cpu()


def evaluate_and_write(model, tokenizer, *, data: str, split: str, seq_len: int, batches: int, batch_size: int,
                       out, label: str, progress: bool = True, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Evaluate on a split (tokenized with the model's tokenizer, cached) and write metrics.json,
    reliability.png and entropy_hist.png into ``out``."""
    import json
    from pathlib import Path

    source = resolve_source(data, split)
    blocks = prepared_blocks(source, tokenizer, seq_len)
    batches = min(batches, -(-len(blocks) // batch_size))
    result, tokens = evaluate_tokens(model, blocks, batches, batch_size, progress=progress, device=device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.update(data=source.describe(), seq_len=seq_len, batches=batches, batch_size=batch_size, model=label)
    (out / EVALUATION_FILE).write_text(json.dumps(result, indent=2))
    reliability_diagram({label: result["reliability_10"]}, out)
    entropy_histogram({label: tokens["entropy"].numpy()}, out)
    return result
