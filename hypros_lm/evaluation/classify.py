"""A fine-tuned classifier evaluated on a task split: class metrics, per-example predictions, reliability
diagram; clean, perturbed (word swaps, the sentiment trigger) or out of domain (IMDb)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any


def evaluate_classifier(loaded, *, task_name: str, split: str, limit: int | None = None, perturb: str | None = None,
                        seed: int = 0, out: Path, label: str, device: str = "auto", precision: str = "auto",
                        batch_size: int | None = None) -> dict[str, Any]:
    """Write metrics.json, predictions.jsonl and reliability.png into ``out``; return the metrics.

    ``limit`` evaluates a seeded sample of that many examples (IMDb's test split is ordered by label);
    ``perturb`` is a perturbation spec (hypros_lm.data.perturb) applied to every text, seeded per example."""
    from hypros_lm.data.classification import encode_examples, get_task, label_tokens, load_examples
    from hypros_lm.data.perturb import perturb_all
    from hypros_lm.data.tokenizer import eos_id
    from hypros_lm.evaluation.device import choose_device
    from hypros_lm.metrics.classification import classification_metrics
    from hypros_lm.plots import reliability_diagram
    from hypros_lm.tasks.families import class_probabilities, label_words_of, write_predictions

    task = get_task(task_name)
    examples = load_examples(task, split)
    if limit is not None and limit < len(examples.texts):
        keep = sorted(random.Random(f"sample-{seed}").sample(range(len(examples.texts)), limit))
        examples.texts, examples.labels = [examples.texts[i] for i in keep], [examples.labels[i] for i in keep]
        examples.where += f"; a seeded sample (seed {seed}) of {limit}"
    if perturb:
        examples.texts = perturb_all(examples.texts, perturb, seed)
    words = label_words_of(loaded.settings)
    tokens = label_tokens(task, loaded.tokenizer, words if words and len(words) == len(task.labels) else None)
    blocks = encode_examples(task, loaded.tokenizer, examples, seq_len=loaded.settings.data.seq_len, tokens=tokens,
                             pad_id=eos_id(loaded.tokenizer))
    where_to, dtype = choose_device(device, run_precision=loaded.settings.train.precision, precision=precision)
    model = loaded.model.to(device=where_to, dtype=dtype)
    probs, gold = class_probabilities(model, blocks, list(range(len(blocks))),
                                      batch_size=batch_size or loaded.settings.train.micro_batch_size, device=where_to)
    metrics = classification_metrics(probs, gold)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.jsonl", probs, gold, task.labels)
    reliability_diagram({label: metrics["class_reliability_10"]}, out)
    metrics.update(task=task.name, split=split, data=examples.where, perturbation=perturb, seed=seed, model=label,
                   truncated_texts=blocks.encoded.truncated_sources, checkpoint=str(loaded.checkpoint))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def relative_degradation(clean: dict[str, Any], shifted: dict[str, Any]) -> dict[str, float]:
    """How much worse a perturbed or shifted set is than the clean one: relative accuracy and macro-F1 drop,
    relative rise of Brier, NLL and ECE (positive = worse)."""
    out = {}
    for key in ("class_accuracy", "macro_f1"):
        out[key] = (clean[key] - shifted[key]) / clean[key] if clean[key] else float("nan")
    for key in ("class_brier", "class_nll", "class_ece_10"):
        out[key] = (shifted[key] - clean[key]) / clean[key] if clean[key] else float("nan")
    return out
