"""Run in the torchtitan environment (scripts/torchtitan_env.sh) by tests/integrations/test_torchtitan.py: torchtitan's
Llama-3 debug model (2048 tokens, width 256) on real WikiText-2 text read as bytes, its loss the project's
torchtitan loss built through torchtitan's own config system, against the project's fused head on the same weights.

    python tests/integrations/torchtitan_check.py single OUT.json   # one process, the whole head
    python tests/integrations/torchtitan_check.py tp OUT.json       # 2 gloo ranks, the head sharded by TP = 2

Each writes the largest differences it found (loss, ∂h, ∂W and every parameter's gradient through the model) and
what it checked; the test reads them. Seeds fix the weights; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchtitan.config.manager import ConfigManager
from torchtitan.observability import structured_logger

from hypros_lm.data.sources import data_dir
from hypros_lm.errors import InvalidValue
from hypros_lm.integrations import torchtitan as integration
from hypros_lm.scoring.api import linear_scoring_loss
from hypros_lm.scoring.reference import naive_linear_score

STEP, BATCH, SEQ = 40, 2, 64
OVERRIDES = ["--loss.objective.tau", "0.2", "--loss.objective.z_loss", "1e-4", "--training.steps", "100",
             "--loss.total_steps", "100"]


def text_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-byte labels from real WikiText-2 validation lines (bytes < 256 < the model's 2048 tokens)."""
    raw = (data_dir() / "wikitext-2-raw" / "wiki.valid.raw").read_bytes()
    ids = torch.tensor(list(raw[10_000:10_000 + BATCH * (SEQ + 1)]), dtype=torch.long).view(BATCH, SEQ + 1)
    labels = ids[:, 1:].clone()
    labels[0, :5] = -100  # ignored targets, as a padded or masked batch has
    return ids[:, :-1].contiguous(), labels


def trainer_config():
    """The example config, through torchtitan's command line (--module/--config and overrides)."""
    return ConfigManager().parse_args(["--module", "hypros_lm.integrations.torchtitan",
                                       "--config", "llama3_debugmodel_hypros", *OVERRIDES])


def build_model(config):
    config.model_spec.model.update_from_config(config=config)  # as torchtitan's trainer: the sharding plan
    torch.manual_seed(0)
    model = config.model_spec.model.build()
    with torch.no_grad():
        model.init_weights(buffer_device=None)
    return model


def body_output(model, tokens: torch.Tensor) -> torch.Tensor:
    """The decoder's output before its root norm, without gradients (FlexAttention has no backward on CPU), with
    positions and masks as torchtitan's trainer gives them (one document a row)."""
    seen = []
    hook = model.norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    positions = torch.arange(tokens.shape[1]).expand_as(tokens).contiguous()
    with torch.no_grad():
        model._skip_lm_head = True
        model(tokens, positions=positions, attention_masks=model.get_attention_masks(positions=positions))
    hook.remove()
    return seen[0]


def gradients(model, body: torch.Tensor, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    loss.backward()
    return {"loss": loss.detach(), "body": body.grad, "norm.weight": model.norm.weight.grad,
            "lm_head.weight": model.lm_head.weight.grad}


def reference(model, body: torch.Tensor, labels, lam: float, settings, *, naive: bool = False) -> dict[str, torch.Tensor]:
    """The project's fused head (or, ``naive``, the float64 full-logits reference) on the same weights, hidden states
    and λ: the loss and the gradients of the root norm's input, the norm's weight and the head's weight."""
    model.zero_grad()
    body = body.clone().requires_grad_()
    hidden, weight, targets = model.norm(body).flatten(0, 1), model.lm_head.weight, labels.flatten()
    if naive:
        loss = naive_linear_score(hidden, weight, targets, lam, settings.bounded, z_loss=settings.z_loss,
                                  dtype=torch.float64)["loss"]
    else:
        loss = linear_scoring_loss(hidden, weight, targets, score="hypros", lam=lam, bounded=settings.bounded,
                                   z_loss=settings.z_loss, reduction="sum") / (labels != -100).sum()
    return gradients(model, body, loss)


def through_loss(loss_fn, model, body: torch.Tensor, labels) -> tuple[dict[str, torch.Tensor], dict]:
    """The same through the project's torchtitan loss, handed the LM head as torchtitan's trainer hands it."""
    model.zero_grad()
    body = body.clone().requires_grad_()
    loss_fn.set_lm_head(model.lm_head)
    loss, metrics = loss_fn(model.norm(body), labels, (labels != -100).sum())
    return gradients(model, body, loss), metrics


def largest(a: dict, b: dict) -> dict[str, float]:
    return {name: float((a[name].float() - b[name].float()).abs().max()) for name in a}


def single(out: Path) -> None:
    config = trainer_config()
    loss_fn = config.loss.build(compile_config=config.compile)
    structured_logger.set_step(STEP)
    model = build_model(config)
    tokens, labels = text_tokens()
    body = body_output(model, tokens)
    grads, metrics = through_loss(loss_fn, model, body, labels)
    lam = loss_fn.objective.schedule(STEP - 1)
    expected = reference(model, body, labels, lam, config.loss.objective)
    naive = reference(model, body, labels, lam, config.loss.objective, naive=True)
    out.write_text(json.dumps({
        "loss_type": type(loss_fn).__name__, "tau": config.loss.objective.tau, "total_steps": loss_fn.total_steps,
        "lam": float(metrics["hypros/lambda"]), "expected_lam": lam, "loss": float(grads["loss"]),
        "scale": {name: float(t.abs().max()) for name, t in expected.items()},
        "differences": largest(grads, expected), "from_float64": largest(grads, naive), "metrics": sorted(metrics),
        "errors": bad_inputs(loss_fn),
    }))


def bad_inputs(loss_fn) -> dict[str, str]:
    """The message each bad input gets (or "accepted")."""
    def message(make) -> str:
        shown = io.StringIO()
        try:
            with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
                make()
        except InvalidValue as err:
            return str(err)
        except SystemExit:  # torchtitan's command line (tyro) prints the settings' error and exits
            return " ".join(shown.getvalue().replace("│", " ").split())
        return "accepted"

    structured_logger.set_step(loss_fn.total_steps + 1)
    return {"total_steps": message(lambda: integration.ScoringLoss.Config(total_steps=0).build()),
            "step": message(loss_fn.lam),
            "tau": message(lambda: ConfigManager().parse_args(["--module", "hypros_lm.integrations.torchtitan",
                                                               "--config", "llama3_debugmodel_hypros",
                                                               "--loss.objective.tau", "0"]))}


def _tp_rank(rank: int, world: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("CHECK_PORT", "29561"))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import torchtitan.distributed.parallel_dims as parallel_dims_module
    from torchtitan.distributed import ParallelDims
    from torchtitan.distributed.utils import get_spmd_context, set_spmd_backend

    parallel_dims_module.device_type = "cpu"  # torchtitan picks CUDA where it finds no accelerator
    config = trainer_config()
    config.parallelism.tensor_parallel_degree = world
    set_spmd_backend(config.parallelism.spmd_backend)
    dims = ParallelDims(dp_replicate=1, dp_shard=1, cp=1, tp=world, pp=1, ep=1, world_size=world,
                        spmd_backend=config.parallelism.spmd_backend)
    dims.build_mesh()
    whole, model = build_model(config), build_model(config)
    model.parallelize(dims)
    tokens, labels = text_tokens()
    body = body_output(whole, tokens)
    structured_logger.set_step(STEP)
    loss_fn = config.loss.build(compile_config=config.compile)
    local_body = body.chunk(world, dim=1)[rank] if config.parallelism.enable_sequence_parallel else body
    with get_spmd_context(parallel_dims=dims)():  # the root norm all-gathers a sequence-parallel body
        grads, _ = through_loss(loss_fn, model, local_body, labels)
    if config.parallelism.enable_sequence_parallel:  # the norm's weight is replicated (R): its gradient is each
        dist.all_reduce(grads["norm.weight"])       # sequence shard's part, which torchtitan sums before the step
    expected = reference(whole, body, labels, loss_fn.objective.schedule(STEP - 1), config.loss.objective)
    local = {name: _block(t, grads[name].shape, rank) for name, t in expected.items()}
    result = {"rank": rank, "rows": model.lm_head.weight.shape[0], "backend": config.parallelism.spmd_backend,
              "sequence_parallel": config.parallelism.enable_sequence_parallel,
              "differences": largest(grads, local),
              "scale": {name: float(t.abs().max()) for name, t in expected.items()}}
    Path(f"{out}.rank{rank}").write_text(json.dumps(result))
    dist.destroy_process_group()


def _block(whole: torch.Tensor, shape: torch.Size, rank: int) -> torch.Tensor:
    """This rank's block of a whole tensor, where TP splits it evenly on the one dim whose size differs."""
    dims = [d for d, (a, b) in enumerate(zip(whole.shape, shape, strict=True)) if a != b]
    return whole if not dims else whole.narrow(dims[0], rank * shape[dims[0]], shape[dims[0]])


def tp(out: Path, world: int = 2) -> None:
    mp.spawn(_tp_rank, args=(world, str(out)), nprocs=world)
    out.write_text(json.dumps([json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(world)]))


if __name__ == "__main__":
    {"single": single, "tp": tp}[sys.argv[1]](Path(sys.argv[2]))
