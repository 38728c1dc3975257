"""DeepSpeed set-up: distributed init, the DeepSpeed JSON with its "auto" sizes filled, the engine,
and the learning-rate schedule (a pure function of the step)."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path
from typing import Any

import torch

from hypros_lm.training.settings import OptimSettings, TrainSettings

DS_CONFIG_DIR = Path(__file__).resolve().parents[2] / "ds_configs"


def resolve_ds_config(name: str) -> Path:
    """A path to a DeepSpeed JSON, or the name of one in ds_configs/ (with or without .json)."""
    for candidate in (Path(name), DS_CONFIG_DIR / name, DS_CONFIG_DIR / f"{name}.json"):
        if candidate.is_file():
            return candidate
    shipped = sorted(p.stem for p in DS_CONFIG_DIR.glob("*.json"))
    raise FileNotFoundError(f"train.ds_config={name!r}: no such file; give a path or one of {shipped}")


def load_ds_config(train: TrainSettings, optim: OptimSettings, world_size: int) -> dict[str, Any]:
    """Read the DeepSpeed JSON and fill its "auto" fields from the run settings; a concrete value
    that disagrees with the settings is an error (one source of truth for batch sizes)."""
    path = resolve_ds_config(train.ds_config)
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {err}") from err
    stage = cfg.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"DeepSpeed config {path}: zero_optimization.stage={stage} must be 0, 1, 2 or 3")
    wanted = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "train_batch_size": train.micro_batch_size * train.grad_accum * world_size,
        "gradient_clipping": optim.grad_clip,
    }
    for key, value in wanted.items():
        given = cfg.get(key, "auto")
        if given not in ("auto", value):
            raise ValueError(
                f"DeepSpeed config {path} sets {key}={given} but the run settings give {value}; "
                f'set it to "auto" in the JSON or change the run setting'
            )
        cfg[key] = value
    bf16 = cfg.setdefault("bf16", {})
    if bf16.get("enabled", "auto") not in ("auto", train.precision == "bf16"):
        raise ValueError(f"DeepSpeed config {path} sets bf16.enabled={bf16['enabled']} but train.precision={train.precision}")
    bf16["enabled"] = train.precision == "bf16"
    if "optimizer" in cfg or "scheduler" in cfg:
        raise ValueError(
            f"DeepSpeed config {path} defines an optimizer/scheduler; hypros-lm builds AdamW and the learning-rate "
            f"schedule from the optim settings, so remove those sections"
        )
    return cfg


def init_distributed() -> tuple[int, int, int]:
    """Initialise torch.distributed through DeepSpeed; also works as a plain `python` single process.

    Returns (rank, local_rank, world_size).
    """
    import deepspeed

    if "RANK" not in os.environ:  # not started by a launcher: one process, a free local port
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    deepspeed.init_distributed(verbose=False)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    else:  # share the cores between the ranks of this node
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return rank, local_rank, world


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_engine(model: torch.nn.Module, ds_config: dict[str, Any], optim: OptimSettings):
    """AdamW (no decay on norms and biases) inside a DeepSpeed engine."""
    import deepspeed

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=(optim.beta1, optim.beta2))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    return engine


def lr_at(step: int, optim: OptimSettings, max_steps: int) -> float:
    """Linear warm-up, then cosine to min_lr_ratio·lr, inverse square root, or constant."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.decay == "constant":
        return optim.lr
    if optim.decay == "inverse_sqrt":
        return optim.lr * math.sqrt(max(1, optim.warmup_steps) / (step + 1))
    progress = (step - optim.warmup_steps) / max(1, max_steps - optim.warmup_steps)
    floor = optim.min_lr_ratio * optim.lr
    return floor + 0.5 * (optim.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(engine, lr: float) -> None:
    for group in engine.optimizer.param_groups:
        group["lr"] = lr
