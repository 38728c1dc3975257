"""Task families as registered components: what the loop and the evaluation need from a kind of task.

``FAMILIES`` is a plain dict from family name to family; the built-in ones (pretraining,
sequence-to-sequence, classification) are added by ``hypros_lm.tasks`` when it is imported, and a new
family is one more entry (``register_family``; a test registers one of its own and trains on it). The
training loop, the study runner and the evaluation entry points ask ``family_for(task.name)`` and use its
interface; none of them names a family. Each method receives only the settings sections it needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from hypros_lm.config import TaskSettings
from hypros_lm.data import DataSettings, PreparedData, load_tokenizer
from hypros_lm.data.pipeline import cached_bpe, cached_bpe_folder
from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.evaluation.lm import evaluate_blocks
from hypros_lm.files import wait_for
from hypros_lm.models import ModelSettings
from hypros_lm.runs import LoadedRun

Log = Callable[[str], None]


class TaskFamily:
    """A kind of task. Subclasses override what differs."""

    name: str = ""
    tool: str = ""
    """The eval/ entry point that evaluates this family's finished runs."""
    console_keys: tuple[str, ...] = ()
    """Validation keys the console line shows beside the token-level scores."""

    def tasks(self) -> list[str | None]:
        """Task names this family owns (``None`` stands for pretraining)."""
        raise NotImplementedError

    def owns(self, task: str | None) -> bool:
        return task in self.tasks()

    def check(self, *, data: DataSettings, task: TaskSettings, model: ModelSettings) -> None:
        """Every check that needs no heavy work (splits reachable offline, paths, settings that fit)."""

    def prepare(self, *, data: DataSettings, task: TaskSettings, log: Log) -> PreparedData:
        """Tokenizer and train/validation blocks for the loop. Called on every rank."""
        raise NotImplementedError

    def configure_model(self, model, prepared: PreparedData, *, task: TaskSettings) -> None:
        """Adjust the model to the task before the engine is built (e.g. the columns the objective scores)."""

    def evaluate(self, model, prepared: PreparedData, *, batches: int, batch_size: int, lam: float, bounded: str,
                 rank: int, world: int, device) -> dict[str, Any]:
        """Validation inside training (a DeepSpeed engine or a plain model), sharded over ranks."""
        return evaluate_blocks(model, prepared.val, batches, batch_size, lam=lam, bounded=bounded, rank=rank,
                               world=world, device=device)

    def evaluate_run(self, loaded: LoadedRun, spec: dict[str, Any], out: Path, *, batches: int,
                     label: str) -> dict[str, Any]:
        """A finished run evaluated on one evaluation spec of a study; writes ``out/metrics.json``."""
        raise NotImplementedError


FAMILIES: dict[str, TaskFamily] = {}


def register_family(family: TaskFamily) -> TaskFamily:
    """Add a family; its task names must not clash with another family's."""
    for other in FAMILIES.values():
        clash = set(family.tasks()) & set(other.tasks())
        if clash and other.name != family.name:
            raise InvalidValue(f"task family {family.name!r}: tasks {sorted(clash, key=str)} already belong to {other.name!r}")
    FAMILIES[family.name] = family
    return family


def family_for(task: str | None) -> TaskFamily:
    """The family that owns a task name (None: pretraining); unknown names list every known task."""
    for family in FAMILIES.values():
        if family.owns(task):
            return family
    known = sorted(t for f in FAMILIES.values() for t in f.tasks() if t is not None)
    raise InvalidValue(f"unknown task {task!r}; choose one of {known} (or none for pretraining)")


def require_family(task: str | None, family: str, tool: str) -> TaskFamily:
    """The family of ``task``, which an entry point made for ``family`` checks before loading anything."""
    owner = family_for(task)
    if owner.name != family:
        what = "pretraining" if task is None else f"task {task!r}"
        raise InvalidValue(f"{tool} evaluates {family} tasks, but {what} is {owner.name}: use {owner.tool or 'another tool'}")
    return owner


def check_init_from(task: TaskSettings) -> None:
    if task.init_from is not None and not Path(task.init_from).is_dir():
        raise MissingFile(f"task.init_from={task.init_from}: no such run or Hugging Face folder")


def task_tokenizer(data: DataSettings, task: TaskSettings, documents, *, whole_words: tuple[str, ...] = (),
                   log: Log) -> Tokenizer:
    """The tokenizer of a fine-tune: data.tokenizer, else the initial model's, else a byte-level BPE on the
    task's training text (``whole_words`` kept one token each), trained once by each node's local rank 0
    while the other ranks wait on its file."""
    if data.tokenizer is not None or task.init_from is not None:
        return load_tokenizer(data.tokenizer or task.init_from)
    key = {"task": task.name, "split": data.train_split, "vocab": data.vocab_size}
    if int(os.environ.get("LOCAL_RANK", 0)) != 0:
        wait_for(cached_bpe_folder(key, whole_words) / "tokenizer.json", f"local rank 0 to train the {task.name} "
                 f"tokenizer", log=log)
    return cached_bpe(key, documents, data.vocab_size, whole_words=whole_words, log=log)
