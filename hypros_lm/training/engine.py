"""DeepSpeed set-up: distributed init, the DeepSpeed JSON with its "auto" sizes filled, ZeRO-3 parameter
handling (building partitioned, writing one parameter at a time), host-memory release, the engine."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hypros_lm import resources
from hypros_lm.config import OptimSettings, TrainSettings
from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.files import free_port
from hypros_lm.models import param_shape


def resolve_ds_config(name: str) -> Path:
    """A path to a DeepSpeed JSON, or the name of a shipped one (zero0, zero1, zero2, zero3, zero3_offload)."""
    try:
        return resources.find("ds_configs", name, suffixes=(".json",))
    except FileNotFoundError as err:
        raise MissingFile(f"train.ds_config={err}") from None


def load_ds_config(train: TrainSettings, optim: OptimSettings, world_size: int, *, hidden_size: int) -> dict[str, Any]:
    """Read the DeepSpeed JSON and fill its "auto" fields from the run settings and the model's hidden
    size; a concrete value that disagrees with the settings is an error (one source of truth for batch sizes)."""
    path = resolve_ds_config(train.ds_config)
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InvalidValue(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); fix the DeepSpeed config "
                           f"there") from None
    stage = cfg.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise InvalidValue(f"DeepSpeed config {path}: zero_optimization.stage={stage} must be 0, 1, 2 or 3")
    wanted = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "train_batch_size": train.micro_batch_size * train.grad_accum * world_size,
        "gradient_clipping": optim.grad_clip,
    }
    for key, value in wanted.items():
        given = cfg.get(key, "auto")
        if given not in ("auto", value):
            raise InvalidValue(
                f"DeepSpeed config {path} sets {key}={given} but the run settings give {value}; "
                f'set it to "auto" in the JSON or change the run setting'
            )
        cfg[key] = value
    _fill_zero_sizes(cfg.get("zero_optimization", {}), hidden_size)
    bf16 = cfg.setdefault("bf16", {})
    if bf16.get("enabled", "auto") not in ("auto", train.precision == "bf16"):
        raise InvalidValue(f"DeepSpeed config {path} sets bf16.enabled={bf16['enabled']} but train.precision={train.precision}")
    bf16["enabled"] = train.precision == "bf16"
    if "optimizer" in cfg or "scheduler" in cfg:
        raise InvalidValue(
            f"DeepSpeed config {path} defines an optimizer/scheduler; hypros-lm builds AdamW and the learning-rate "
            f"schedule from the optim settings, so remove those sections"
        )
    return cfg


def zero_buffer_sizes(hidden_size: int) -> dict[str, int]:
    """ZeRO's bucket and prefetch sizes for a model of this width (what ``"auto"`` means in ds_configs/).

    DeepSpeed's defaults are sized for billion-parameter GPU models (buckets of 5e8 elements,
    ``stage3_max_live_parameters`` 1e9: a 400M model is then never released after its forward, and
    each bucket alone is 1 GB in bf16). As transformers' DeepSpeed integration does, buckets follow h²,
    the size of one projection matrix; ZeRO-3 keeps at most about two layers (≈ 12·h² parameters
    each) gathered at once, leaves parameters under 10·h elements (norm gains) unpartitioned, and steps
    the optimizer over sub-groups of ≈ 32·h² elements (the default, 1e9, steps a 500M model's whole
    partition at once, and Adam's temporaries are then as large as the partition).
    """
    h2 = hidden_size * hidden_size
    return {
        "reduce_bucket_size": h2,
        "allgather_bucket_size": h2,
        "stage3_prefetch_bucket_size": int(0.9 * h2),
        "stage3_param_persistence_threshold": 10 * hidden_size,
        "stage3_max_live_parameters": 24 * h2,
        "stage3_max_reuse_distance": 24 * h2,
        "sub_group_size": 32 * h2,
    }


def _fill_zero_sizes(zero: dict[str, Any], hidden_size: int) -> None:
    for key, value in zero_buffer_sizes(hidden_size).items():
        if zero.get(key) == "auto":
            zero[key] = value


def zero_stage(ds_config: dict[str, Any]) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


def model_init_context(ds_config: dict[str, Any]):
    """Where to build the model: under ZeRO-3 inside ``deepspeed.zero.Init``, so each parameter is
    partitioned across the ranks as it is created and no rank ever holds the whole model; else as usual."""
    if zero_stage(ds_config) != 3:
        return contextlib.nullcontext()
    import deepspeed
    from transformers.integrations.deepspeed import prevent_arange_dtype_change

    stack = contextlib.ExitStack()
    stack.enter_context(prevent_arange_dtype_change())  # RoPE buffers keep their fp32 arange under a bf16 zero.Init
    stack.enter_context(deepspeed.zero.Init(config_dict_or_path=ds_config))
    return stack


def is_partitioned(param: torch.Tensor) -> bool:
    return hasattr(param, "ds_id")


def assign_parameters(model: torch.nn.Module, value_of: Callable[[str, torch.Size], torch.Tensor], *, rank: int) -> None:
    """Set every parameter to ``value_of(name, full_shape)``, one parameter at a time.

    A ZeRO-3 shard is gathered, written on rank 0 and re-partitioned on leaving the context (so
    ``value_of`` runs on rank 0 only, and at most one whole parameter is ever gathered); a parameter
    held whole is written on every rank. Tied parameters appear once, under their first name.
    """
    import deepspeed

    for name, param in model.named_parameters():
        with deepspeed.zero.GatheredParameters([param], modifier_rank=0), torch.no_grad():
            if rank == 0 or not is_partitioned(param):
                param.data.copy_(value_of(name, param_shape(param)))


def parameter_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Every parameter name (tied ones under each name) with its full shape, partitioned or not."""
    return {name: tuple(param_shape(p)) for name, p in model.named_parameters(remove_duplicate=False)}


def init_distributed() -> tuple[int, int, int]:
    """Initialise torch.distributed through DeepSpeed; also works as a plain `python` single process.

    Returns (rank, local_rank, world_size).
    """
    import deepspeed

    if "RANK" not in os.environ:  # not started by a launcher: one process, a free local port
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    deepspeed.init_distributed(verbose=False)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    else:  # share the cores between the ranks of this node, unless OMP_NUM_THREADS says how many to use
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        threads = os.environ.get("OMP_NUM_THREADS", "")
        torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0
                              else max(1, (os.cpu_count() or 1) // local_world))
        return_freed_host_memory()
    return rank, local_rank, world


MMAP_THRESHOLD_BYTES = 1 << 20


def return_freed_host_memory() -> None:
    """Make glibc hand freed tensors of ≥ 1 MiB back to the system (Linux, CPU training).

    glibc raises its mmap threshold each time a large block is freed, up to 32 MiB; after that, every
    tensor below 32 MiB (ZeRO-3's gathered layers, gradient buckets, activations) comes from arena
    heaps that fragment and never shrink, so a rank's memory grows step after step: the `large` rung
    under ZeRO-3 was killed for memory at its first step on a 24 GB machine. A fixed threshold (which
    also turns the adjustment off) keeps large blocks in their own mappings, released on free.
    """
    import ctypes
    import ctypes.util

    m_mmap_threshold = -3  # from malloc.h
    name = ctypes.util.find_library("c")
    if name and "libc" in name:
        try:
            ctypes.CDLL(name).mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES)
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
            pass


def release_shared_memory_buffers(rank: int) -> None:
    """Unlink this rank's /dev/shm buffers of DeepSpeed's CPU shared-memory all-reduce.

    DeepSpeed creates them (``deepspeed_allreduce_buffer_<i>_<addr>_<port>_<rank>``, 67 MB each) and never
    removes them: /dev/shm is memory, so every finished multi-rank CPU run used to leave its buffers behind
    until the machine ran out of memory. Called when training ends, when every rank opened them long ago;
    the mappings stay valid until the process exits.
    """
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    for buffer in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{addr}_{port}_{rank}"):
        buffer.unlink(missing_ok=True)



def build_engine(model: torch.nn.Module, ds_config: dict[str, Any], optim: OptimSettings):
    """AdamW (no decay on norms and biases) inside a DeepSpeed engine."""
    import deepspeed

    decay = [p for p in model.parameters() if p.requires_grad and len(param_shape(p)) >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and len(param_shape(p)) < 2]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=(optim.beta1, optim.beta2))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    if zero_stage(ds_config) == 0 and engine.dp_world_size == 1:
        engine.enable_backward_allreduce = False  # one replica: the all-reduce would only flatten and copy every gradient
    return engine


def set_lr(engine, lr: float) -> None:
    for group in engine.optimizer.param_groups:
        group["lr"] = lr
