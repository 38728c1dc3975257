"""Run folders: their layout ([`RunFolder`][hypros_lm.runs.RunFolder]), atomic checkpoints around DeepSpeed's own save/load, and
reading a finished run back (its settings, tokenizer and consolidated weights), exporting it to Hugging Face.

Saving: DeepSpeed writes each rank's shards into ``checkpoints/<tag>.partial/``; only when every rank
has finished does rank 0 add ``meta.json``, rename the folder to ``checkpoints/<tag>/`` and atomically
replace ``checkpoints/latest``. A crash mid-write leaves a ``.partial`` folder that is never loaded (and
is cleared by the next save), so a checkpoint that looks complete is complete. ``meta.json`` also records each
file's checksum ([`hypros_lm.files.CHECKSUM`][hypros_lm.files.CHECKSUM]), checked before any load: a checkpoint damaged after it was
written (a partial copy, a full disk, bit rot) is named, and ``--resume`` falls back to the newest intact one.

Reading: ZeRO-1/2/3 checkpoints hold the fp32 weights in per-rank partitions; DeepSpeed's own
``get_fp32_state_dict_from_zero_checkpoint`` consolidates them. A ZeRO-0 checkpoint has the full weights
in its model-states file.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tokenizers import Tokenizer

from hypros_lm.config import RunSettings, settings_from_dict
from hypros_lm.data import eos_id, load_tokenizer
from hypros_lm.errors import DamagedFile, InvalidValue, MissingFile
from hypros_lm.files import file_checksum, read_yaml, write_atomic
from hypros_lm.models import HFCausalLM, build_model, is_hf
from hypros_lm.models.hf import current_names, pretrained_weights

LATEST = "latest"
META = "meta.json"
EVALUATION_PREFIX = "eval-"
EVALUATION_FILE = "metrics.json"
"""What every evaluation writes into its folder (``eval/lm.py``, a task's ``evaluate_run``)."""


def _tag(step: int) -> str:
    return f"step_{step:07d}"


class _Part:
    """A file or folder of a run folder, by name: ``RunFolder(path).metrics_file`` is ``path / "metrics.jsonl"``."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, folder: RunFolder, _owner: type) -> Path:
        return folder.path / self.name


@dataclass(frozen=True)
class RunFolder:
    """The layout of a run folder, the one place its file names are spelled; every reader and writer of a run
    folder (the loop, telemetry, evaluation, studies, the tests) goes through it::

        <run>/settings.yaml  tokenizer.json  environment.json  metrics.jsonl  model_config.json (an hf: model's)
        <run>/checkpoints/latest  checkpoints/step_0000100/ (meta.json: complete)  checkpoints/step_….partial/
        <run>/eval-<name>/metrics.json  (a finished run's evaluations)
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    settings_file = _Part("settings.yaml")
    tokenizer_file = _Part("tokenizer.json")
    environment_file = _Part("environment.json")
    metrics_file = _Part("metrics.jsonl")
    hf_config_file = _Part("model_config.json")
    """An hf: run's transformers config, written at its start: the source may move or be offline later."""
    checkpoints = _Part("checkpoints")

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / _tag(step)

    def has_checkpoint(self, step: int) -> bool:
        """Whether the checkpoint of ``step`` is complete (its ``meta.json`` is written last)."""
        return (self.checkpoint(step) / META).is_file()

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None before the first."""
        pointer = self.checkpoints / LATEST
        if not pointer.is_file():
            return None
        folder = self.checkpoints / pointer.read_text().strip()
        if not (folder / META).is_file():
            raise MissingFile(f"{pointer} names {folder.name}, which is missing or incomplete (no {META})")
        return folder

    def complete(self) -> list[Path]:
        """The complete checkpoints, newest first."""
        return sorted((p for p in self.checkpoints.glob("step_*") if (p / META).is_file()), reverse=True)

    def find(self, step: int | None = None) -> Path:
        """The complete checkpoint of ``step`` (else the latest), or an error naming the complete ones."""
        if step is None and self.latest() is not None:
            return self.latest()
        if step is not None and self.has_checkpoint(step):
            return self.checkpoint(step)
        have = sorted(p.name for p in self.complete())
        wanted = f"for step {step}" if step is not None else f"(no {self.checkpoints / LATEST}); is it a run folder?"
        raise MissingFile(f"{self.path} has no complete checkpoint {wanted}; complete ones: {have}")

    def evaluation(self, name: str) -> Path:
        """The folder of a finished run's evaluation ``name`` (``eval/lm.py --split name``, a study's evaluations)."""
        return self.path / f"{EVALUATION_PREFIX}{name}"

    def evaluations(self) -> list[Path]:
        return sorted(self.path.glob(f"{EVALUATION_PREFIX}*"))

    def is_run(self) -> bool:
        return self.settings_file.is_file()

    def check(self) -> RunFolder:
        """This folder, or a clear error when it is not a run folder."""
        if not self.is_run():
            raise MissingFile(f"{self.path} is not a run folder: no {self.settings_file.name}")
        return self

    def settings_dict(self) -> dict[str, Any]:
        """The saved settings as plain YAML values ([`read_settings()`][hypros_lm.runs.RunFolder.read_settings] gives them typed)."""
        return read_yaml(self.check().settings_file)

    def read_settings(self) -> RunSettings:
        return settings_from_dict(self.settings_dict())

    def environment(self) -> dict[str, Any]:
        return json.loads(self.environment_file.read_text())

    def metrics(self, split: str | None = None) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` in order, those of one split (train, val, lm_eval) when given."""
        if not self.metrics_file.is_file():
            raise MissingFile(f"{self.path} has no {self.metrics_file.name}; is it a run folder that has started?")
        records = [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]
        return records if split is None else [r for r in records if r["split"] == split]


def _rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values, so that loading it runs no code (weights_only)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _deepspeed_data_classes() -> list:
    """The plain data classes DeepSpeed pickles into its optimizer states (a loss scaler's numbers, ZeRO's
    stage enum, fragment addresses): allowed when loading, nothing else is."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


def safe_load(path: Path, *, mmap: bool = False) -> Any:
    """``torch.load`` that refuses anything but tensors, plain values and DeepSpeed's data classes: a run
    folder from someone else cannot execute code when it is loaded (``weights_only=True``)."""
    try:
        with torch.serialization.safe_globals(_deepspeed_data_classes()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        try:
            found = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "unknown objects"
        except Exception:  # noqa: BLE001 - the listing is only for the message
            found = "objects it could not list"
        raise InvalidValue(f"{path} holds pickled objects other than tensors and plain values ({found}); refusing "
                           f"to load it, since unpickling could run code. Load only run folders you trust, written "
                           f"by hypros-lm") from None


def verify_checkpoint_files(folder: Path, *, rank: int = 0, world: int = 1) -> None:
    """Check a checkpoint's files before anything reads them: their checksums against ``meta.json`` (rank ``rank``
    of ``world`` checks every world-th file; [`DamagedFile`][hypros_lm.errors.DamagedFile] names the first that differs),
    then every .pt file with [`safe_load()`][hypros_lm.runs.safe_load] (memory-mapped: no tensor data is read) before DeepSpeed's own
    loaders, which unpickle without that check, see them. A checkpoint saved before checksums loads with a note."""
    recorded = json.loads((folder / META).read_text()).get("checksums")
    if recorded is None:
        warnings.warn(f"checkpoint {folder} records no checksums (saved before they were): not verified", stacklevel=2)
    for name, expected in sorted((recorded or {}).items())[rank::world]:
        path = folder / name
        actual = file_checksum(path) if path.is_file() else "missing"
        if actual != expected:
            raise DamagedFile(f"checkpoint {folder} is damaged: {name} has checksum {actual}, {META} recorded "
                              f"{expected} (changed after the save: a partial copy, a full disk, bit rot); use an intact "
                              f"copy of it or an earlier checkpoint")
    for path in sorted(folder.glob("*.pt")):
        safe_load(path, mmap=True)


def _checksums(folder: Path, rank: int, world: int) -> dict[str, str]:
    """Every file's checksum, each rank hashing every world-th file, gathered on all ranks (collective)."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != META)
    mine = {name: file_checksum(folder / name) for name in names[rank::world]}
    gathered: list[dict[str, str]] = [{} for _ in range(world)]
    dist.all_gather_object(gathered, mine)
    return {name: value for part in gathered for name, value in part.items()}


def save_checkpoint(engine, ckpt_dir: Path, step: int, client_state: dict[str, Any], *, keep: int) -> Path:
    """Collective: every rank calls it. Returns the final folder."""
    rank = dist.get_rank()
    tag, partial = _tag(step), f"{_tag(step)}.partial"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(ckpt_dir / partial, ignore_errors=True)
    dist.barrier()
    engine.save_checkpoint(str(ckpt_dir), tag=partial, client_state=client_state, save_latest=False)
    torch.save(_rng_state(), ckpt_dir / partial / f"rng_rank{rank:03d}.pt")
    dist.barrier()
    checksums = _checksums(ckpt_dir / partial, rank, dist.get_world_size())
    final = ckpt_dir / tag
    if rank == 0:
        meta = {"step": step, "world_size": dist.get_world_size(), **client_state, "checksums": checksums}
        write_atomic(ckpt_dir / partial / META, json.dumps(meta, indent=2, default=str))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(ckpt_dir / partial, final)
        write_atomic(ckpt_dir / LATEST, tag)
        _prune(ckpt_dir, keep)
    dist.barrier()
    return final


def _prune(ckpt_dir: Path, keep: int) -> None:
    done = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir() and not p.name.endswith(".partial"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(engine, folder: Path) -> dict[str, Any]:
    """Collective: restore model, optimizer and this rank's RNG; return the saved client state."""
    meta = json.loads((folder / META).read_text())
    if meta["world_size"] != dist.get_world_size():
        raise InvalidValue(
            f"checkpoint {folder} was written by {meta['world_size']} ranks; this run has "
            f"{dist.get_world_size()}. Resume with the same number of ranks"
        )
    rank, world = dist.get_rank(), dist.get_world_size()
    verdicts: list[str | None] = [None] * world
    try:
        verify_checkpoint_files(folder, rank=rank, world=world)
    except DamagedFile as err:
        verdicts[rank] = str(err)
    dist.all_gather_object(verdicts, verdicts[rank])  # every rank stops, or none
    if any(verdicts):
        raise DamagedFile(next(v for v in verdicts if v))
    _, client_state = engine.load_checkpoint(str(folder.parent), tag=folder.name)
    if client_state is None:
        raise MissingFile(f"DeepSpeed could not load the checkpoint in {folder}")
    rng_file = folder / f"rng_rank{dist.get_rank():03d}.pt"
    _set_rng_state(safe_load(rng_file))
    return {**client_state, "step": meta["step"]}


def resume_latest(engine, run: RunFolder, *, log) -> tuple[Path, dict[str, Any]] | None:
    """Collective: restore the newest intact checkpoint (``latest``, else an older one, with a warning naming what
    was skipped); None before the first checkpoint; where none is intact, the newest one's error."""
    latest = run.latest()
    if latest is None:
        return None
    candidates = [latest, *(p for p in run.complete() if p.name < latest.name)]
    for i, folder in enumerate(candidates):
        try:
            return folder, load_checkpoint(engine, folder)
        except DamagedFile as err:
            if i == len(candidates) - 1:
                raise DamagedFile(f"no intact checkpoint to resume from in {run.checkpoints}; {err}") from None
            log(f"warning: skipping checkpoint {folder.name}, resuming from {candidates[i + 1].name}: {err}")
    return None


@dataclass
class LoadedRun:
    settings: RunSettings
    model: HFCausalLM
    tokenizer: Tokenizer
    checkpoint: Path

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.checkpoint.parent.parent)  # <run>/checkpoints/step_N


def consolidated_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Full fp32 weights from a checkpoint folder of any ZeRO stage."""
    verify_checkpoint_files(folder)
    if any(folder.glob("*zero_pp_rank_*optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(folder.parent), tag=folder.name)
    else:
        files = sorted(folder.glob("mp_rank_*_model_states.pt"))
        if not files:
            raise MissingFile(f"{folder} holds no DeepSpeed model states; the checkpoint is incomplete")
        state = safe_load(files[0])["module"]
    return {k: v.float() for k, v in state.items()}


def load_run(run_dir: str | Path, *, step: int | None = None) -> LoadedRun:
    """The model of a run folder at its latest (or a given) checkpoint, on CPU, in eval mode."""
    run = RunFolder(run_dir).check()
    settings = run.read_settings()
    tokenizer = load_tokenizer(str(run.tokenizer_file))
    folder = run.find(step)
    model = build_model(settings.model, tokenizer.get_vocab_size(), attention="sdpa", config=_saved_config(run, settings))
    state = _with_tied(model, current_names(consolidated_state_dict(folder)))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:4]
        raise InvalidValue(
            f"checkpoint {folder} does not match model {settings.model.name!r} from {run.settings_file} "
            f"(e.g. {diff}); it is from another model size or vocabulary"
        )
    model.load_state_dict(state)
    return LoadedRun(settings, model.eval(), tokenizer, folder)


def _saved_config(run: RunFolder, settings: RunSettings):
    """An hf: run's own copy of its transformers config (None for a ladder run)."""
    if not is_hf(settings.model.name):
        return None
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(run.hf_config_file))


def _with_tied(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with a tied weight that the checkpoint holds under one of its names only."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    for tied in names.values():
        present = [n for n in tied if n in state]
        for name in tied:
            if name not in state and present:
                state[name] = state[present[0]]
    return state


def to_hf(loaded: LoadedRun):
    """The run's model as the transformers causal LM it was trained as (``LlamaForCausalLM`` for a rung) and
    a fast tokenizer, in memory."""
    from transformers import PreTrainedTokenizerFast

    eos = eos_id(loaded.tokenizer)
    eos_token = loaded.tokenizer.id_to_token(eos)
    fast = PreTrainedTokenizerFast(tokenizer_object=loaded.tokenizer, eos_token=eos_token, bos_token=eos_token,
                                   pad_token=eos_token)
    hf = loaded.model.lm
    hf.config.use_cache = True
    if not is_hf(loaded.settings.model.name):  # a rung's documents begin after the separator, too
        hf.config.bos_token_id = hf.generation_config.bos_token_id = eos
    hf.config.eos_token_id = hf.generation_config.eos_token_id = eos  # the separator the data was written with
    return hf.eval(), fast


def export_hf(run_dir: str | Path, out_dir: str | Path, *, step: int | None = None) -> Path:
    """Write a Hugging Face folder (the run's model class + fast tokenizer) that from_pretrained loads."""
    hf, fast = to_hf(load_run(run_dir, step=step))
    out_dir = Path(out_dir)
    hf.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir


def read_weights(source: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a run folder (any ZeRO stage) or a Hugging Face folder, named as [`HFCausalLM`][hypros_lm.models.hf.HFCausalLM]'s
    parameters (tied ones under each name)."""
    if RunFolder(source).is_run():
        loaded = load_run(source).model
        return {k: v.detach() for k, v in loaded.named_parameters(remove_duplicate=False)}
    return pretrained_weights(source)
