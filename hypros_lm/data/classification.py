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
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from hypros_lm.data.seq2seq import Encoded, Seq2SeqBlocks
from hypros_lm.data.sources import data_dir, use_offline_copies


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
        raise ValueError(f"unknown classification task {name!r}; choose one of {sorted(TASKS)}")
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
        raise FileNotFoundError(f"task {task.name!r} has no {split!r} split offline; offline it has "
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
        raise ValueError(f"{where}: row {i} has label {y}, outside {task.name}'s label set 0..{len(task.labels) - 1} "
                         f"({', '.join(task.labels)}); {len(bad)} such rows: fix the data or pick the matching task")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(f"{where}: row {empty[0]} has an empty text ({len(empty)} such rows); remove them from the data")


def label_tokens(task: ClassificationTask, tok: Tokenizer, words: tuple[str, ...] | None = None) -> list[int]:
    """The token id of each label word; a word that is not one token is an error naming it and the fix."""
    words = words or task.label_words
    if len(words) != len(task.labels):
        raise ValueError(f"task.label_words gives {len(words)} words but {task.name} has {len(task.labels)} classes "
                         f"({', '.join(task.labels)})")
    ids = []
    for word in words:
        pieces = tok.encode(word).ids
        if len(pieces) != 1:
            shown = [tok.id_to_token(i) for i in pieces]
            raise ValueError(f"label word {word!r} of task {task.name} is {len(pieces)} tokens {shown} for this tokenizer, "
                             f"not one; pass --task.label_words with single-token words (with their leading space, "
                             f"comma-separated, in label order {list(task.labels)}) or use a tokenizer that has it")
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"label words {list(words)} share a token; each class needs its own")
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
        raise ValueError(f"data.seq_len={seq_len} leaves no room for text in {task.name}'s prompt; raise --seq-len")
    prompts, truncated = [], 0
    for enc in tok.encode_batch(examples.texts):
        ids = enc.ids
        if len(ids) > room:
            ids, truncated = ids[:room], truncated + 1
        prompts.append(head_ids + ids + tail_ids)
    encoded = Encoded(prompts, [[tokens[y]] for y in examples.labels], truncated, 0)
    return ClassificationBlocks(encoded, seq_len, pad_id, examples.labels, tokens)
