"""Pretraining: a language model on a corpus (prepared in-process when small, by launch/prepare_data.py
when large), evaluated over token blocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypros_lm.config import TaskSettings
from hypros_lm.data import DataSettings, PreparedData, is_prepared, prepare_data, resolve_sources
from hypros_lm.data.shards import read_manifest
from hypros_lm.data.sources import canonical_split
from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.evaluation.lm import evaluate_and_write
from hypros_lm.models import ModelSettings, model_vocab_size
from hypros_lm.runs import LoadedRun
from hypros_lm.tasks.registry import Log, TaskFamily


class PretrainFamily(TaskFamily):
    name = "pretrain"
    tool = "eval/lm.py"

    def tasks(self) -> list[str | None]:
        return [None]

    def check(self, *, data: DataSettings, task: TaskSettings, model: ModelSettings) -> None:
        resolve_sources(data)  # a large hub corpus stops here with the command that prepares it
        if is_prepared(data.name):
            check_prepared(data, model)

    def prepare(self, *, data: DataSettings, task: TaskSettings, log: Log) -> PreparedData:
        return prepare_data(data, log=log)

    def evaluate_run(self, loaded: LoadedRun, spec: dict[str, Any], out: Path, *, batches: int,
                     label: str) -> dict[str, Any]:
        return evaluate_and_write(loaded.model, loaded.tokenizer, data=spec["data"], split=spec["split"],
                                  seq_len=loaded.settings.data.seq_len, batches=batches,
                                  batch_size=loaded.settings.train.micro_batch_size, out=out, label=label,
                                  progress=False)


def check_prepared(data: DataSettings, model: ModelSettings) -> None:
    """A prepared folder this version reads, whose token ids the model's vocabulary holds."""
    manifest = read_manifest(data.name)
    vocab = model_vocab_size(model, manifest["tokenizer"]["vocab_size"])
    if manifest["max_token_id"] >= vocab:
        raise InvalidValue(f"{data.name} holds token id {manifest['max_token_id']}, outside the model's "
                           f"vocabulary of {vocab}; set model.vocab_size ≥ {manifest['max_token_id'] + 1} or leave it unset")
    for split in (data.train_split, data.val_split):
        if canonical_split(split) not in manifest["splits"]:
            raise MissingFile(f"the prepared corpus {data.name} has no {split!r} split; it has "
                              f"{list(manifest['splits'])}")
