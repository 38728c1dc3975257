"""Task families as registered components: pretraining, sequence-to-sequence, classification.

The training loop, the study runner and the evaluation entry points ask ``family_for(task.name)`` and use
its interface; none of them names a family. A new family is a subclass registered with
``register_family`` (a test registers one of its own and trains on it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Log = Callable[[str], None]


class TaskFamily:
    """What the loop and the evaluation need from a kind of task. Subclasses override what differs."""

    name: str = ""
    tool: str = ""
    """The eval/ entry point that evaluates this family's finished runs."""
    console_keys: tuple[str, ...] = ()
    """Validation keys the console line shows beside the token-level scores."""

    def tasks(self) -> list[str]:
        """Task names this family owns (``None`` stands for pretraining)."""
        raise NotImplementedError

    def owns(self, task: str | None) -> bool:
        return task in self.tasks()

    def check(self, settings) -> None:
        """Every check that needs no heavy work (splits reachable offline, paths, settings that fit)."""

    def prepare(self, settings, *, log: Log):
        """Tokenizer and train/validation blocks for the loop (a ``PreparedData``). Called on every rank."""
        raise NotImplementedError

    def configure_model(self, model, data, settings) -> None:
        """Adjust the model to the task before the engine is built (e.g. the columns the objective scores)."""

    def evaluate(self, model, data, settings, *, lam: float, bounded: str, rank: int, world: int, device) -> dict[str, Any]:
        """Validation inside training (a DeepSpeed engine or a plain model), sharded over ranks."""
        from hypros_lm.evaluation.lm import evaluate_blocks

        t = settings.train
        return evaluate_blocks(model, data.val, t.eval_batches, t.micro_batch_size, lam=lam, bounded=bounded,
                               rank=rank, world=world, device=device)

    def evaluate_run(self, run_dir: Path, spec: dict[str, Any], out: Path, *, batches: int, label: str) -> dict[str, Any]:
        """A finished run evaluated on one evaluation spec of a study; writes ``out/metrics.json``."""
        raise NotImplementedError


FAMILIES: dict[str, TaskFamily] = {}


def register_family(family: TaskFamily) -> TaskFamily:
    """Add a family; its task names must not clash with another family's."""
    for other in FAMILIES.values():
        clash = set(family.tasks()) & set(other.tasks())
        if clash and other.name != family.name:
            raise ValueError(f"task family {family.name!r}: tasks {sorted(clash, key=str)} already belong to {other.name!r}")
    FAMILIES[family.name] = family
    return family


def _builtin() -> None:
    if not FAMILIES:
        from hypros_lm.tasks.families import ClassificationFamily, PretrainFamily, Seq2SeqFamily

        for family in (PretrainFamily(), Seq2SeqFamily(), ClassificationFamily()):
            register_family(family)


def family_for(task: str | None) -> TaskFamily:
    """The family that owns a task name (None: pretraining); unknown names list every known task."""
    _builtin()
    for family in FAMILIES.values():
        if family.owns(task):
            return family
    known = sorted(t for f in FAMILIES.values() for t in f.tasks() if t is not None)
    raise ValueError(f"unknown task {task!r}; choose one of {known} (or none for pretraining)")


def require_family(task: str | None, family: str, tool: str) -> TaskFamily:
    """The family of ``task``, which an entry point made for ``family`` checks before loading anything."""
    owner = family_for(task)
    if owner.name != family:
        what = "pretraining" if task is None else f"task {task!r}"
        raise ValueError(f"{tool} evaluates {family} tasks, but {what} is {owner.name}: use {owner.tool or 'another tool'}")
    return owner
