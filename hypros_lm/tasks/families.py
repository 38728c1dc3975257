"""The built-in task families: pretraining corpora, sequence-to-sequence tasks, classification tasks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from hypros_lm.tasks.registry import Log, TaskFamily


def task_tokenizer(settings, documents, *, whole_words: tuple[str, ...] = (), log: Log):
    """The tokenizer of a fine-tune: data.tokenizer, else the initial model's, else a byte-level BPE on the
    task's training text (``whole_words`` kept one token each), trained once by each node's local rank 0
    while the other ranks wait on its file."""
    from hypros_lm.data import load_tokenizer
    from hypros_lm.data.pipeline import cached_bpe, cached_bpe_folder
    from hypros_lm.data.prepare import wait_for

    init = settings.task.init_from
    if settings.data.tokenizer is not None or init is not None:
        return load_tokenizer(settings.data.tokenizer or str(Path(init) / "tokenizer.json"))
    key = {"task": settings.task.name, "split": settings.data.train_split, "vocab": settings.data.vocab_size}
    if int(os.environ.get("LOCAL_RANK", 0)) != 0:
        wait_for(cached_bpe_folder(key, whole_words) / "tokenizer.json", f"local rank 0 to train the {settings.task.name} "
                 f"tokenizer", log=log)
    return cached_bpe(key, documents, settings.data.vocab_size, whole_words=whole_words, log=log)


class PretrainFamily(TaskFamily):
    name = "pretrain"
    tool = "eval/lm.py"

    def tasks(self) -> list[str | None]:
        return [None]

    def check(self, settings) -> None:
        from hypros_lm.data import is_prepared, resolve_sources

        resolve_sources(settings.data)  # a large hub corpus stops here with the command that prepares it
        if is_prepared(settings.data.name):
            _check_prepared(settings)

    def prepare(self, settings, *, log: Log):
        from hypros_lm.data import prepare_data

        return prepare_data(settings.data, log=log)

    def evaluate_run(self, loaded, spec: dict[str, Any], out: Path, *, batches: int, label: str) -> dict[str, Any]:
        from hypros_lm.evaluation.lm import evaluate_and_write

        return evaluate_and_write(loaded.model, loaded.tokenizer, data=spec["data"], split=spec["split"],
                                  seq_len=loaded.settings.data.seq_len, batches=batches,
                                  batch_size=loaded.settings.train.micro_batch_size, out=out, label=label,
                                  progress=False)


def _check_prepared(settings) -> None:
    """A prepared folder this version reads, whose token ids the model's vocabulary holds."""
    from hypros_lm.data.prepare import read_manifest
    from hypros_lm.data.sources import canonical_split
    from hypros_lm.models import model_vocab_size

    manifest = read_manifest(settings.data.name)
    vocab = model_vocab_size(settings.model, manifest["tokenizer"]["vocab_size"])
    if manifest["max_token_id"] >= vocab:
        raise ValueError(f"{settings.data.name} holds token id {manifest['max_token_id']}, outside the model's "
                         f"vocabulary of {vocab}; set model.vocab_size ≥ {manifest['max_token_id'] + 1} or leave it unset")
    for split in (settings.data.train_split, settings.data.val_split):
        if canonical_split(split) not in manifest["splits"]:
            raise FileNotFoundError(f"the prepared corpus {settings.data.name} has no {split!r} split; it has "
                                    f"{list(manifest['splits'])}")


def _check_init_from(settings) -> None:
    if settings.task.init_from is not None and not Path(settings.task.init_from).is_dir():
        raise FileNotFoundError(f"task.init_from={settings.task.init_from}: no such run or Hugging Face folder")


class Seq2SeqFamily(TaskFamily):
    name = "seq2seq"
    tool = "eval/generate.py"

    def tasks(self) -> list[str]:
        from hypros_lm.data.seq2seq import TASKS

        return list(TASKS)

    def check(self, settings) -> None:
        from hypros_lm.data.seq2seq import check_splits, get_task

        check_splits(get_task(settings.task.name), [settings.data.train_split, settings.data.val_split])
        _check_init_from(settings)

    def prepare(self, settings, *, log: Log):
        from hypros_lm.data import PreparedData
        from hypros_lm.data.seq2seq import get_task, load_pairs, prepare_seq2seq

        def documents() -> list[str]:
            sources, targets, _ = load_pairs(get_task(settings.task.name), settings.data.train_split)
            return sources + targets

        tok = task_tokenizer(settings, documents, log=log)
        train, val, described = prepare_seq2seq(settings.task, tok, seq_len=settings.data.seq_len,
                                                train_split=settings.data.train_split,
                                                val_split=settings.data.val_split, log=log)
        return PreparedData(tok, train, val, described)

    def evaluate_run(self, loaded, spec: dict[str, Any], out: Path, *, batches: int, label: str) -> dict[str, Any]:
        from hypros_lm.evaluation.generate import evaluate_task

        return evaluate_task(loaded, task_name=spec["task"], split=spec.get("split", "test"),
                             limit=spec.get("limit"), perturbations=tuple(spec.get("perturb", ())), out=out,
                             progress=False)


class ClassificationFamily(TaskFamily):
    name = "classification"
    tool = "eval/classify.py"
    console_keys = ("class_accuracy", "macro_f1", "class_brier", "class_ece_10")

    def tasks(self) -> list[str]:
        from hypros_lm.data.classification import TASKS

        return list(TASKS)

    def check(self, settings) -> None:
        from hypros_lm.data.classification import get_task, label_tokens, load_examples

        task = get_task(settings.task.name)
        if not task.trainable:
            raise ValueError(f"task {task.name!r} is for evaluation only ({task.note}); fine-tune on sst2 and "
                             f"evaluate on {task.name} with eval/classify.py --task {task.name}")
        _check_init_from(settings)
        for split in (settings.data.train_split, settings.data.val_split):
            load_examples(task, split)  # missing splits, labels outside the set, empty texts: named here
        if settings.data.tokenizer is not None or settings.task.init_from is not None:
            label_tokens(task, task_tokenizer(settings, None, log=lambda _m: None), label_words_of(settings))

    def prepare(self, settings, *, log: Log):
        from hypros_lm.data import PreparedData
        from hypros_lm.data.classification import encode_examples, get_task, label_tokens, load_examples
        from hypros_lm.data.tokenizer import eos_id

        task = get_task(settings.task.name)
        train, val = load_examples(task, settings.data.train_split), load_examples(task, settings.data.val_split)
        words = label_words_of(settings) or task.label_words
        corpus = train.texts  # a from-scratch BPE learns the whole split (its cache key), label words kept whole
        tok = task_tokenizer(settings, lambda: corpus, whole_words=words, log=log)
        if settings.task.train_limit:
            train.texts, train.labels = train.texts[: settings.task.train_limit], train.labels[: settings.task.train_limit]
        tokens = label_tokens(task, tok, words)
        blocks = []
        for examples in (train, val):
            b = encode_examples(task, tok, examples, seq_len=settings.data.seq_len, tokens=tokens, pad_id=eos_id(tok))
            log(f"data: {examples.where}: {len(b)} examples, {b.encoded.truncated_sources} texts truncated to fit "
                f"seq_len={settings.data.seq_len}")
            blocks.append(b)
        log(f"labels: {dict(zip(task.labels, words, strict=True))}; objective scored "
            f"over {'the label set' if settings.task.score_over == 'labels' else 'the whole vocabulary'}")
        return PreparedData(tok, blocks[0], blocks[1], {"train": train.where, "val": val.where})

    def configure_model(self, model, data, settings) -> None:
        if settings.task.score_over == "labels":
            model.head.score_columns = torch.tensor(data.train.label_tokens)

    def evaluate(self, model, data, settings, *, lam: float, bounded: str, rank: int, world: int, device) -> dict[str, Any]:
        from hypros_lm.metrics.classification import classification_metrics

        scores = super().evaluate(model, data, settings, lam=lam, bounded=bounded, rank=rank, world=world, device=device)
        t = settings.train
        total = min(len(data.val), t.eval_batches * t.micro_batch_size * world)
        total -= total % world  # equal forward counts on every rank: ZeRO-3 gathers inside each forward
        mine = list(range(total))[rank::world]
        probs, gold = class_probabilities(model, data.val, mine, batch_size=t.micro_batch_size, device=device)
        if dist.is_initialized() and world > 1:
            parts: list[Any] = [None] * world
            dist.all_gather_object(parts, (probs, gold))
            probs, gold = torch.cat([p for p, _ in parts]), torch.cat([g for _, g in parts])
        metrics = classification_metrics(probs, gold)
        metrics.pop("class_reliability_10")
        return scores | metrics

    def evaluate_run(self, loaded, spec: dict[str, Any], out: Path, *, batches: int, label: str) -> dict[str, Any]:
        from hypros_lm.evaluation.classify import evaluate_classifier

        return evaluate_classifier(loaded, task_name=spec["task"], split=spec.get("split", "validation"),
                                   limit=spec.get("limit"), perturb=spec.get("perturb"), seed=spec.get("seed", 0),
                                   out=out, label=label)


def label_words_of(settings) -> tuple[str, ...] | None:
    words = settings.task.label_words
    return tuple(w if w.startswith(" ") else " " + w for w in words.split(",")) if words else None


@torch.no_grad()
def class_probabilities(model, blocks, indices: list[int], *, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) class probabilities (a softmax over the label words' logits at each example's label position)
    and the (N,) gold classes, for these examples. The head computes only the label columns."""
    was_training = model.training
    model.eval()
    columns = torch.tensor(blocks.label_tokens, device=device)
    probs = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        x, _ = blocks.batch(chunk)
        logits = model(x.to(device), None, columns=columns)  # (B, T, C)
        at = torch.as_tensor(blocks.positions[chunk], device=logits.device)
        probs.append(torch.softmax(logits[torch.arange(len(chunk), device=logits.device), at].float(), dim=-1).cpu())
    model.train(was_training)
    n_classes = len(blocks.label_tokens)
    return (torch.cat(probs) if probs else torch.zeros(0, n_classes)), torch.as_tensor(blocks.classes[indices])


def write_predictions(path: Path, probs: torch.Tensor, gold: torch.Tensor, labels: tuple[str, ...]) -> None:
    """One JSON line per example: index, gold and predicted class, class probabilities."""
    with open(path, "w") as f:
        for i, (p, g) in enumerate(zip(probs.tolist(), gold.tolist(), strict=True)):
            f.write(json.dumps({"index": i, "gold": g, "predicted": int(max(range(len(p)), key=p.__getitem__)),
                                "probs": p, "gold_label": labels[g]}) + "\n")
