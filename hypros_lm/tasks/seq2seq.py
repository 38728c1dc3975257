"""Sequence-to-sequence tasks (translation, summarization) cast as decoder-only prompts: ``prompt(source) target <eos>``.

Each example is one row of ``seq_len`` tokens; the targets of the prompt (source) and of the padding
are ``ignore_index``, so only target tokens are scored. Offline, task names resolve to the real copies in
the data folder; copies that are tokenized (Moses-style, with ``&apos;``-type escapes) are detokenized
before they are used as text or references.
"""

from __future__ import annotations

import gzip
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from hypros_lm.config import TaskSettings
from hypros_lm.data import DataSettings, PreparedData
from hypros_lm.data.perturb import perturb_all
from hypros_lm.data.sources import data_dir, use_offline_copies
from hypros_lm.data.tokenizer import eos_id
from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.evaluation.device import choose_device
from hypros_lm.evaluation.generate import generate, summary_scores, translation_scores
from hypros_lm.evaluation.lm import evaluate_tokens
from hypros_lm.models import ModelSettings
from hypros_lm.runs import EVALUATION_FILE, LoadedRun, to_hf
from hypros_lm.scoring.scores import score_keys
from hypros_lm.tasks.registry import Log, TaskFamily, check_init_from, require_family, task_tokenizer

IGNORE = -100


@dataclass(frozen=True)
class Seq2SeqTask:
    name: str
    kind: str  # "translation" or "summarization"
    prompt: str  # format with {source}; the target follows after a space
    local: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """split → (source file, target file) or (jsonl file, source field, target field[, first, last])."""
    hub: tuple[str, str | None, str, str] | None = None  # (path, config, source field, target field)
    tokenized: bool = False
    source_lang: str = "en"
    target_lang: str = "en"
    note: str = ""


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n").lstrip("\ufeff") for line in f]


TASKS: dict[str, Seq2SeqTask] = {
    "multi30k-en-de": Seq2SeqTask(
        "multi30k-en-de", "translation", "English: {source}\nGerman:",
        {"train": ("multi30k/train.en", "multi30k/train.de"), "validation": ("multi30k/val.en", "multi30k/val.de"),
         "test": ("multi30k/test.en", "multi30k/test.de")},
        hub=("bentrevett/multi30k", None, "en", "de"), source_lang="en", target_lang="de"),
    "wmt14-en-de": Seq2SeqTask(
        "wmt14-en-de", "translation", "English: {source}\nGerman:",
        {"train": ("wmt-ende-10k/src-train.txt", "wmt-ende-10k/tgt-train.txt"),
         "validation": ("wmt-ende-10k/src-val.txt", "wmt-ende-10k/tgt-val.txt"),
         "test": ("wmt-ende-10k/src-test.txt", "wmt-ende-10k/tgt-test.txt")},
        hub=("wmt/wmt14", "de-en", "en", "de"), tokenized=True, source_lang="en", target_lang="de",
        note="offline: 10k training pairs, newstest2013 validation, newstest2014 (2,737 filtered) test"),
    "iwslt15-vi-en": Seq2SeqTask(
        "iwslt15-vi-en", "translation", "Vietnamese: {source}\nEnglish:",
        {"validation": ("iwslt15-en-vi/tst2012.vi", "iwslt15-en-vi/tst2012.en"),
         "test": ("iwslt15-en-vi/tst2013.vi", "iwslt15-en-vi/tst2013.en")},
        hub=("IWSLT/iwslt2015", "vi-en", "vi", "en"), tokenized=True, source_lang="vi", target_lang="en",
        note="offline: tst2012/tst2013 only (evaluation and domain shift)"),
    "cnn-dailymail": Seq2SeqTask(
        "cnn-dailymail", "summarization", "Article: {source}\nSummary:",
        {"test": ("cnn_dailymail/summeval_test_sample100.jsonl", "article", "highlights")},
        hub=("abisee/cnn_dailymail", "3.0.0", "article", "highlights"), tokenized=True,
        note="offline: a real 100-article test sample (SummEval), tokenized"),
    "xsum": Seq2SeqTask(
        "xsum", "summarization", "Article: {source}\nSummary:",
        {"train": ("xsum/dev_sample.jsonl.gz", "dialogue", "summary", "0", "800"),
         "validation": ("xsum/dev_sample.jsonl.gz", "dialogue", "summary", "800", "880"),
         "test": ("xsum/dev_sample.jsonl.gz", "dialogue", "summary", "880", "980")},
        hub=("EdinburghNLP/xsum", None, "document", "summary"),
        note="offline: a real 980-pair sample split 800/80/100 (reported as a sample)"),
}


def get_task(name: str) -> Seq2SeqTask:
    if name not in TASKS:
        raise InvalidValue(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


_detok_cache: dict[str, object] = {}


def detokenize(text: str, lang: str) -> str:
    """Undo Moses-style tokenization and its HTML escapes (for tokenized copies)."""
    from sacremoses import MosesDetokenizer

    detok = _detok_cache.setdefault(lang, MosesDetokenizer(lang=lang))
    return detok.detokenize(html.unescape(text).split())


def load_pairs(task: Seq2SeqTask, split: str) -> tuple[list[str], list[str], str]:
    """(sources, targets, description) for a split, as clean text; errors name what exists."""
    root = data_dir()
    if root is not None and split in task.local:
        spec = task.local[split]
        if len(spec) == 2:
            src_path, tgt_path = root / spec[0], root / spec[1]
            sources, targets = _lines(src_path), _lines(tgt_path)
            if len(sources) != len(targets):
                raise InvalidValue(f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}; "
                                   f"source and target files must be aligned line by line")
            where = f"{src_path} + {tgt_path}"
        else:
            path = root / spec[0]
            records = [json.loads(x) for x in _lines(path) if x.strip()]
            first, last = (int(spec[3]), int(spec[4])) if len(spec) > 3 else (0, len(records))
            records = records[first:last]
            # a missing text (the XSum sample has a NaN document) becomes empty: skipped and counted later
            sources = [r[spec[1]] if isinstance(r[spec[1]], str) else "" for r in records]
            targets = [r[spec[2]] if isinstance(r[spec[2]], str) else "" for r in records]
            where = f"{path} [{first}:{last}]"
        if task.tokenized:
            sources = [detokenize(s, task.source_lang) for s in sources]
            targets = [detokenize(t, task.target_lang) for t in targets]
        return sources, targets, f"{task.name} [{split}] from {where}" + (f" ({task.note})" if task.note else "")
    if use_offline_copies():
        raise MissingFile(f"task {task.name!r} has no {split!r} split offline; offline it has "
                          f"{sorted(task.local) or 'no splits'} ({task.note or 'data folder: ' + str(root)})")
    import datasets

    path, config, src_field, tgt_field = task.hub
    ds = datasets.load_dataset(path, config, split=split)
    if "translation" in ds.column_names:
        rows = ds["translation"]
        return [r[src_field] for r in rows], [r[tgt_field] for r in rows], f"{task.name} [{split}] from the hub ({path})"
    return list(ds[src_field]), list(ds[tgt_field]), f"{task.name} [{split}] from the hub ({path})"


@dataclass
class Encoded:
    prompt_ids: list[list[int]]
    target_ids: list[list[int]]
    truncated_sources: int
    empty_skipped: int


def usable_pairs(sources: list[str], targets: list[str]) -> list[int]:
    """Indices of the pairs with a non-empty source and target (the others are skipped and counted)."""
    return [i for i, (s, t) in enumerate(zip(sources, targets, strict=True)) if s.strip() and t.strip()]


def encode_pairs(task: Seq2SeqTask, tok: Tokenizer, sources: list[str], targets: list[str], *, seq_len: int,
                 max_target_tokens: int) -> Encoded:
    """Tokenize prompts and targets; truncate long sources (counted) so every example fits seq_len."""
    eos = eos_id(tok)
    keep = usable_pairs(sources, targets)
    enc_t = tok.encode_batch([" " + targets[i].strip() for i in keep])
    head, tail = task.prompt.split("{source}")
    head_ids = tok.encode(head).ids if head else []
    tail_ids = tok.encode(tail).ids
    enc_s = tok.encode_batch([sources[i].strip() for i in keep])
    prompts, tgts, truncated = [], [], 0
    for s, t in zip(enc_s, enc_t, strict=True):
        target = t.ids[:max_target_tokens] + [eos]
        room = seq_len - len(target) - len(head_ids) - len(tail_ids)
        if room < 1:
            raise InvalidValue(f"data.seq_len={seq_len} leaves no room for a source next to {len(target)} target tokens; "
                               f"raise --seq-len or lower task.max_target_tokens")
        src = s.ids
        if len(src) > room:
            src, truncated = src[:room], truncated + 1
        prompts.append(head_ids + src + tail_ids)
        tgts.append(target)
    return Encoded(prompts, tgts, truncated, len(sources) - len(keep))


class Seq2SeqBlocks:
    """The TokenBlocks interface over examples: batch(indices) → (inputs, targets), targets only on the answer."""

    def __init__(self, encoded: Encoded, seq_len: int, pad_id: int):
        self.encoded, self.seq_len, self.pad_id = encoded, seq_len, pad_id
        if not encoded.prompt_ids:
            raise InvalidValue("no usable examples (every pair had an empty source or target)")

    def __len__(self) -> int:
        return len(self.encoded.prompt_ids)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.full((len(indices), self.seq_len), self.pad_id, dtype=np.int64)
        y = np.full((len(indices), self.seq_len), IGNORE, dtype=np.int64)
        for row, i in enumerate(indices):
            p, t = self.encoded.prompt_ids[i], self.encoded.target_ids[i]
            seq = (p + t)[: self.seq_len + 1]
            x[row, : len(seq) - 1] = seq[:-1]
            y[row, len(p) - 1 : len(seq) - 1] = seq[len(p):]  # position k predicts token k+1: only target tokens
        return torch.from_numpy(x), torch.from_numpy(y)


def check_splits(task: Seq2SeqTask, splits: list[str]) -> None:
    """Fail before heavy work when a split cannot be had offline."""
    if not use_offline_copies():
        return
    missing = [s for s in splits if s not in task.local]
    if missing:
        raise MissingFile(f"task {task.name!r} has no {missing} split offline; offline it has "
                          f"{sorted(task.local)} ({task.note or 'see the data MANIFEST'})")


def prepare_seq2seq(settings, tok: Tokenizer, *, seq_len: int, train_split: str, val_split: str,
                    log=print) -> tuple[Seq2SeqBlocks, Seq2SeqBlocks, dict[str, str]]:
    task = get_task(settings.name)
    blocks, described = [], {}
    for role, split in (("train", train_split), ("val", val_split)):
        sources, targets, where = load_pairs(task, split)
        if role == "train" and settings.train_limit:
            sources, targets = sources[: settings.train_limit], targets[: settings.train_limit]
        enc = encode_pairs(task, tok, sources, targets, seq_len=seq_len, max_target_tokens=settings.max_target_tokens)
        log(f"data: {where}: {len(enc.prompt_ids)} pairs, {enc.truncated_sources} sources truncated to fit "
            f"seq_len={seq_len}, {enc.empty_skipped} empty pairs skipped")
        blocks.append(Seq2SeqBlocks(enc, seq_len, eos_id(tok)))
        described[role] = where
    return blocks[0], blocks[1], described


def generate_for_task(hf_model, tok, task, sources: list[str], references: list[str], *, seq_len: int, max_target: int,
                      beams: int = 1, max_new_tokens: int = 64, batch_size: int = 16,
                      progress: bool = True) -> tuple[list[str], int]:
    """A task's prompts for these sources, each leaving room for max_new_tokens within the run's seq_len
    (long sources truncated), continued by the model; returns (predictions, sources truncated)."""
    eos = eos_id(tok)
    enc = encode_pairs(task, tok, sources, references, seq_len=seq_len - max_new_tokens + max_target,
                       max_target_tokens=max_target)
    hyps = generate(hf_model, enc.prompt_ids, eos_id=eos, beams=beams, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, decode=tok.decode, progress=progress)
    return hyps, enc.truncated_sources


TARGET_TOKEN_SCORES = ("loss_log", "accuracy", "ece_10", "ece_15", "ece_adaptive_10", "perplexity", "val_tokens",
                       "reliability_10")
"""What generation reports of the references' teacher-forced tokens, beside each registered score (``loss_<key>``)."""


def evaluate_task(loaded: LoadedRun, *, task_name: str | None = None, split: str = "test", limit: int | None = None,
                  beams: int = 1, max_new_tokens: int = 64, batch_size: int = 16, perturbations: tuple[str, ...] = (),
                  seed: int = 0, out=None, progress: bool = True, device: str = "auto",
                  precision: str = "auto") -> tuple[dict[str, Any], dict[str, list[tuple[str, str, str]]]]:
    """Generate for a split of a task with a fine-tuned run (a ``LoadedRun``), score it (clean and perturbed
    sources) and write predictions-<name>.txt and metrics.json into ``out``; also the target-side token
    calibration. Returns the metrics and, per source set, three (source, reference, output) samples."""
    where_to, dtype = choose_device(device, run_precision=loaded.settings.train.precision, precision=precision)
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
    out = Path(out or loaded.folder.path / f"gen-{task.name}-{split}")
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"task": task.name, "data": where, "examples": len(sources), "beams": beams,
                              "max_new_tokens": max_new_tokens, "checkpoint": str(loaded.checkpoint)}
    def target_tokens(srcs: list[str]) -> dict[str, Any]:
        """The references' token scores given these sources (teacher-forced): calibration under each source set."""
        blocks = Seq2SeqBlocks(encode_pairs(task, tok, srcs, references, seq_len=seq_len, max_target_tokens=max_target),
                               seq_len, eos)
        calib, _ = evaluate_tokens(model, blocks, -(-len(blocks) // batch_size), batch_size, device=where_to)
        kept = {*TARGET_TOKEN_SCORES, *(f"loss_{k}" for k in score_keys(calib))}
        return {k: v for k, v in calib.items() if k in kept}

    result["target_tokens"] = target_tokens(sources)
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
        if name != "clean":
            result[name]["target_tokens"] = target_tokens(srcs)
        samples[name] = list(zip(srcs[:3], references[:3], hyps[:3], strict=True))
    main = "bleu" if task.kind == "translation" else "rougeL_f"
    for spec in perturbations:
        clean = result["clean"][main]
        result[spec]["relative_degradation"] = (clean - result[spec][main]) / clean if clean else None
    (out / EVALUATION_FILE).write_text(json.dumps(result, indent=2))
    return result, samples


class Seq2SeqFamily(TaskFamily):
    name = "seq2seq"
    tool = "eval/generate.py"

    def tasks(self) -> list[str]:
        return list(TASKS)

    def check(self, *, data: DataSettings, task: TaskSettings, model: ModelSettings) -> None:
        check_splits(get_task(task.name), [data.train_split, data.val_split])
        check_init_from(task)

    def prepare(self, *, data: DataSettings, task: TaskSettings, log: Log) -> PreparedData:
        def documents() -> list[str]:
            sources, targets, _ = load_pairs(get_task(task.name), data.train_split)
            return sources + targets

        tok = task_tokenizer(data, task, documents, log=log)
        train, val, described = prepare_seq2seq(task, tok, seq_len=data.seq_len, train_split=data.train_split,
                                                val_split=data.val_split, log=log)
        return PreparedData(tok, train, val, described)

    def evaluate_run(self, loaded: LoadedRun, spec: dict[str, Any], out: Path, *, batches: int,
                     label: str) -> dict[str, Any]:
        return evaluate_task(loaded, task_name=spec["task"], split=spec.get("split", "test"),
                             limit=spec.get("limit"), perturbations=(spec["perturb"],) if spec.get("perturb") else (),
                             seed=spec.get("seed", 0), out=out, progress=False)[0]
