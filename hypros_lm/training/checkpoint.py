"""Atomic checkpoints around DeepSpeed's own save/load.

DeepSpeed writes each rank's shards into ``checkpoints/<tag>.partial/``; only when every rank has
finished does rank 0 add ``meta.json``, rename the folder to ``checkpoints/<tag>/`` and atomically
replace ``checkpoints/latest``. A crash mid-write leaves a ``.partial`` folder that is never loaded
(and is cleared by the next save), so a checkpoint that looks complete is complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from hypros_lm.files import write_atomic

LATEST = "latest"


def _tag(step: int) -> str:
    return f"step_{step:07d}"




def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    final = ckpt_dir / tag
    if rank == 0:
        meta = {"step": step, "world_size": dist.get_world_size(), **client_state}
        write_atomic(ckpt_dir / partial / "meta.json", json.dumps(meta, indent=2, default=str))
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


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    pointer = ckpt_dir / LATEST
    if not pointer.is_file():
        return None
    folder = ckpt_dir / pointer.read_text().strip()
    if not (folder / "meta.json").is_file():
        raise FileNotFoundError(f"{pointer} names {folder.name}, which is missing or incomplete (no meta.json)")
    return folder


def load_checkpoint(engine, folder: Path) -> dict[str, Any]:
    """Collective: restore model, optimizer and this rank's RNG; return the saved client state."""
    meta = json.loads((folder / "meta.json").read_text())
    if meta["world_size"] != dist.get_world_size():
        raise ValueError(
            f"checkpoint {folder} was written by {meta['world_size']} ranks; this run has "
            f"{dist.get_world_size()}. Resume with the same number of ranks"
        )
    _, client_state = engine.load_checkpoint(str(folder.parent), tag=folder.name)
    if client_state is None:
        raise FileNotFoundError(f"DeepSpeed could not load the checkpoint in {folder}")
    rng_file = folder / f"rng_rank{dist.get_rank():03d}.pt"
    _set_rng_state(torch.load(rng_file, weights_only=False))
    return {**client_state, "step": meta["step"]}
