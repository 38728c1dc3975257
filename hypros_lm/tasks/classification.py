"""Text classification cast as a decoder-only prompt followed by one label word.

``Review: {text}\\nSentiment:`` then `` positive``: the label word is one token, the only scored target of
the example (the prompt's targets are ``ignore_index``). Class probabilities are the label words'
probabilities renormalized over the label set (a softmax over their logits). Offline, task names resolve
to the real copies in the data folder; what a split really is (AG News offline: a seeded split of its
test set) is said wherever it is used.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tokenizers import Tokenizer

from hypros_lm.config import TaskSettings
from hypros_lm.data import DataSettings, PreparedData
from hypros_lm.data.perturb import perturb_all
from hypros_lm.data.sources import data_dir, use_offline_copies
from hypros_lm.data.tokenizer import eos_id
from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.evaluation.device import choose_device
from hypros_lm.evaluation.figures import reliability_diagram
from hypros_lm.metrics.classification import classification_metrics
from hypros_lm.models import ModelSettings
from hypros_lm.runs import EVALUATION_FILE, LoadedRun
from hypros_lm.tasks.registry import Log, TaskFamily, check_init_from, task_tokenizer
from hypros_lm.tasks.seq2seq import Encoded, Seq2SeqBlocks


@dataclass(frozen=True)
class ClassificationTask:
    name: str
    prompt: str  # format with {text}; the label word follows
    labels: tuple[str, ...]  # class names, in label order
    label_words: tuple[str, ...]  # one token each for the tokenizer, in label order
    local: dict[str, tuple] = field(default_factory=dict)
    """split → (reader, file[, first, last]): rows [first:last) of a seeded permutation when given."""
    hub: tuple[str, str | None, str, str] | None = None  # (path, config, text field, label field)
    trainable: bool = True  # False: evaluation only (a domain-shift set)
    note: str = ""


AG_NEWS_SPLIT_SEED = 0
TASKS: dict[str, ClassificationTask] = {
    "sst2": ClassificationTask(
        "sst2", "Review: {text}\nSentiment:", ("negative", "positive"), (" negative", " positive"),
        {"train": ("tsv", "sst2/train.tsv.gz"), "validation": ("tsv", "sst2/dev.tsv")},
        hub=("nyu-mll/glue", "sst2", "sentence", "label"),
        note="GLUE SST-2: train 67,349, dev 872 (the test split has no labels: results are on dev)"),
    "ag_news": ClassificationTask(
        "ag_news", "Article: {text}\nTopic:", ("World", "Sports", "Business", "Sci/Tech"),
        (" world", " sports", " business", " science"),
        {"train": ("ag_csv", "ag_news/test.csv.gz", 0, 6600), "validation": ("ag_csv", "ag_news/test.csv.gz", 6600, 7600)},
        hub=("fancyzhx/ag_news", None, "text", "label"),
        note=f"offline: a seeded split (seed {AG_NEWS_SPLIT_SEED}) of the official 7,600-example TEST set into "
             f"6,600 for training and 1,000 for evaluation; not the official train split"),
    "imdb": ClassificationTask(
        "imdb", "Review: {text}\nSentiment:", ("negative", "positive"), (" negative", " positive"),
        {"test": ("jsonl", "imdb/test.jsonl.gz")}, hub=("stanfordnlp/imdb", None, "text", "label"), trainable=False,
        note="IMDb test (25,000 reviews): evaluation only, domain shift for sentiment models"),
}


def get_task(name: str) -> ClassificationTask:
    if name not in TASKS:
        raise InvalidValue(f"unknown classification task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


@dataclass
class Examples:
    texts: list[str]
    labels: list[int]
    where: str


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _read_tsv(path: Path) -> tuple[list[str], list[int]]:
    with _open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"].strip() for r in rows], [int(r["label"]) for r in rows]


def _clean_ag_news(text: str) -> str:
    """AG News writes '$' as '#36;' and line breaks as a backslash."""
    return " ".join(html.unescape(re.sub(r"#(\d+);", r"&#\1;", text)).replace("\\", " ").split())


def _read_ag_csv(path: Path) -> tuple[list[str], list[int]]:
    with _open(path) as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    return [_clean_ag_news(f"{title} {body}") for _, title, body in rows], [int(c) - 1 for c, _, _ in rows]


def _read_jsonl(path: Path) -> tuple[list[str], list[int]]:
    with _open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r["text"] for r in records], [int(r["label"]) for r in records]


READERS = {"tsv": _read_tsv, "ag_csv": _read_ag_csv, "jsonl": _read_jsonl}


def clean_text(text: str) -> str:
    """One line of text: IMDb's <br /> tags and runs of whitespace become single spaces."""
    return " ".join(text.replace("<br />", " ").split())


def load_examples(task: ClassificationTask, split: str) -> Examples:
    """Texts and labels of a split, checked: every label in the task's label set, no empty text."""
    root = data_dir()
    if root is not None and split in task.local:
        reader, file, *rows = task.local[split]
        path = root / file
        texts, labels = READERS[reader](path)
        where = f"{task.name} [{split}] from {path}"
        if rows:
            order = np.random.default_rng(AG_NEWS_SPLIT_SEED).permutation(len(texts))[rows[0]:rows[1]]
            texts, labels = [texts[i] for i in order], [labels[i] for i in order]
            where += f" (rows {rows[0]}:{rows[1]} of a seeded permutation)"
    elif use_offline_copies():
        raise MissingFile(f"task {task.name!r} has no {split!r} split offline; offline it has "
                          f"{sorted(task.local)} ({task.note})")
    else:
        import datasets

        path, config, text_field, label_field = task.hub
        ds = datasets.load_dataset(path, config, split=split)
        texts, labels, where = list(ds[text_field]), [int(x) for x in ds[label_field]], f"{task.name} [{split}] from the hub ({path})"
    texts = [clean_text(t) for t in texts]
    check_examples(task, texts, labels, where)
    return Examples(texts, labels, where + f" ({task.note})")


def check_examples(task: ClassificationTask, texts: list[str], labels: list[int], where: str) -> None:
    bad = [(i, y) for i, y in enumerate(labels) if not 0 <= y < len(task.labels)]
    if bad:
        i, y = bad[0]
        raise InvalidValue(f"{where}: row {i} has label {y}, outside {task.name}'s label set 0..{len(task.labels) - 1} "
                           f"({', '.join(task.labels)}); {len(bad)} such rows: fix the data or pick the matching task")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise InvalidValue(f"{where}: row {empty[0]} has an empty text ({len(empty)} such rows); remove them from the data")


def label_tokens(task: ClassificationTask, tok: Tokenizer, words: tuple[str, ...] | None = None) -> list[int]:
    """The token id of each label word; a word that is not one token is an error naming it and the fix."""
    words = words or task.label_words
    if len(words) != len(task.labels):
        raise InvalidValue(f"task.label_words gives {len(words)} words but {task.name} has {len(task.labels)} classes "
                           f"({', '.join(task.labels)})")
    ids = []
    for word in words:
        pieces = tok.encode(word).ids
        if len(pieces) != 1:
            shown = [tok.id_to_token(i) for i in pieces]
            raise InvalidValue(f"label word {word!r} of task {task.name} is {len(pieces)} tokens {shown} for this tokenizer, "
                               f"not one; pass --task.label_words with single-token words (with their leading space, "
                               f"comma-separated, in label order {list(task.labels)}) or use a tokenizer that has it")
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise InvalidValue(f"label words {list(words)} share a token; each class needs its own")
    return ids


class ClassificationBlocks(Seq2SeqBlocks):
    """Prompt + label token rows (targets only at the label); also each example's class and the position
    whose prediction is the label (the prompt's last token)."""

    def __init__(self, encoded: Encoded, seq_len: int, pad_id: int, classes: list[int], tokens: list[int]):
        super().__init__(encoded, seq_len, pad_id)
        self.classes = np.asarray(classes, dtype=np.int64)
        self.label_tokens = tokens
        self.positions = np.asarray([len(p) - 1 for p in encoded.prompt_ids], dtype=np.int64)


def encode_examples(task: ClassificationTask, tok: Tokenizer, examples: Examples, *, seq_len: int,
                    tokens: list[int], pad_id: int) -> ClassificationBlocks:
    """Tokenize prompts (texts truncated to fit seq_len, counted) and attach each example's label token."""
    head, tail = task.prompt.split("{text}")
    head_ids, tail_ids = (tok.encode(head).ids if head else []), tok.encode(tail).ids
    room = seq_len - len(head_ids) - len(tail_ids)
    if room < 1:
        raise InvalidValue(f"data.seq_len={seq_len} leaves no room for text in {task.name}'s prompt; raise --seq-len")
    prompts, truncated = [], 0
    for enc in tok.encode_batch(examples.texts):
        ids = enc.ids
        if len(ids) > room:
            ids, truncated = ids[:room], truncated + 1
        prompts.append(head_ids + ids + tail_ids)
    encoded = Encoded(prompts, [[tokens[y]] for y in examples.labels], truncated, 0)
    return ClassificationBlocks(encoded, seq_len, pad_id, examples.labels, tokens)


class ClassificationFamily(TaskFamily):
    name = "classification"
    tool = "eval/classify.py"
    console_keys = ("class_accuracy", "macro_f1", "class_brier", "class_ece_10")

    def tasks(self) -> list[str]:
        return list(TASKS)

    def check(self, *, data: DataSettings, task: TaskSettings, model: ModelSettings) -> None:
        spec = get_task(task.name)
        if not spec.trainable:
            raise InvalidValue(f"task {spec.name!r} is for evaluation only ({spec.note}); fine-tune on sst2 and "
                               f"evaluate on {spec.name} with eval/classify.py --task {spec.name}")
        check_init_from(task)
        for split in (data.train_split, data.val_split):
            load_examples(spec, split)  # missing splits, labels outside the set, empty texts: named here
        if data.tokenizer is not None or task.init_from is not None:
            label_tokens(spec, task_tokenizer(data, task, None, log=lambda _m: None), label_words_of(task))

    def prepare(self, *, data: DataSettings, task: TaskSettings, log: Log) -> PreparedData:
        spec = get_task(task.name)
        train, val = load_examples(spec, data.train_split), load_examples(spec, data.val_split)
        words = label_words_of(task) or spec.label_words
        corpus = train.texts  # a from-scratch BPE learns the whole split (its cache key), label words kept whole
        tok = task_tokenizer(data, task, lambda: corpus, whole_words=words, log=log)
        if task.train_limit:
            train.texts, train.labels = train.texts[: task.train_limit], train.labels[: task.train_limit]
        tokens = label_tokens(spec, tok, words)
        blocks = []
        for examples in (train, val):
            b = encode_examples(spec, tok, examples, seq_len=data.seq_len, tokens=tokens, pad_id=eos_id(tok))
            log(f"data: {examples.where}: {len(b)} examples, {b.encoded.truncated_sources} texts truncated to fit "
                f"seq_len={data.seq_len}")
            blocks.append(b)
        log(f"labels: {dict(zip(spec.labels, words, strict=True))}; objective scored "
            f"over {'the label set' if task.score_over == 'labels' else 'the whole vocabulary'}")
        return PreparedData(tok, blocks[0], blocks[1], {"train": train.where, "val": val.where})

    def configure_model(self, model, prepared: PreparedData, *, task: TaskSettings) -> None:
        if task.score_over == "labels":
            model.score_over(torch.tensor(prepared.train.label_tokens))

    def evaluate(self, model, prepared: PreparedData, *, batches: int, batch_size: int, lam: float, bounded: str,
                 rank: int, world: int, device) -> dict[str, Any]:
        scores = super().evaluate(model, prepared, batches=batches, batch_size=batch_size, lam=lam, bounded=bounded,
                                  rank=rank, world=world, device=device)
        total = min(len(prepared.val), batches * batch_size * world)
        total -= total % world  # equal forward counts on every rank: ZeRO-3 gathers inside each forward
        mine = list(range(total))[rank::world]
        probs, gold = class_probabilities(model, prepared.val, mine, batch_size=batch_size, device=device)
        if dist.is_initialized() and world > 1:
            parts: list[Any] = [None] * world
            dist.all_gather_object(parts, (probs, gold))
            probs, gold = torch.cat([p for p, _ in parts]), torch.cat([g for _, g in parts])
        metrics = classification_metrics(probs, gold)
        metrics.pop("class_reliability_10")
        return scores | metrics

    def evaluate_run(self, loaded: LoadedRun, spec: dict[str, Any], out: Path, *, batches: int,
                     label: str) -> dict[str, Any]:
        return evaluate_classifier(loaded, task_name=spec["task"], split=spec.get("split", "validation"),
                                   limit=spec.get("limit"), perturb=spec.get("perturb"), seed=spec.get("seed", 0),
                                   out=out, label=label)


def label_words_of(task: TaskSettings) -> tuple[str, ...] | None:
    """task.label_words as label words with their leading space, or None when unset."""
    words = task.label_words
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
        logits = model(x.to(device), mode="logits", columns=columns)  # (B, T, C)
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


def evaluate_classifier(loaded: LoadedRun, *, task_name: str, split: str, limit: int | None = None, perturb: str | None = None,
                        seed: int = 0, out: Path, label: str, device: str = "auto", precision: str = "auto",
                        batch_size: int | None = None) -> dict[str, Any]:
    """Write metrics.json, predictions.jsonl and reliability.png into ``out``; return the metrics.

    ``limit`` evaluates a seeded sample of that many examples (IMDb's test split is ordered by label);
    ``perturb`` is a perturbation spec (hypros_lm.data.perturb) applied to every text, seeded per example."""
    task = get_task(task_name)
    examples = load_examples(task, split)
    if limit is not None and limit < len(examples.texts):
        keep = sorted(random.Random(f"sample-{seed}").sample(range(len(examples.texts)), limit))
        examples.texts, examples.labels = [examples.texts[i] for i in keep], [examples.labels[i] for i in keep]
        examples.where += f"; a seeded sample (seed {seed}) of {limit}"
    if perturb:
        examples.texts = perturb_all(examples.texts, perturb, seed)
    words = label_words_of(loaded.settings.task)
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
    (out / EVALUATION_FILE).write_text(json.dumps(metrics, indent=2))
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
