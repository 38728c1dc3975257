"""HyProS in torchtitan: a loss its trainer builds like its own, fused with the LM head (no logits).

    # your config_registry: any torchtitan config with the objective swapped in
    from hypros_lm.integrations.torchtitan import with_scoring_loss

    def llama3_8b_hypros() -> Trainer.Config:
        return with_scoring_loss(llama3_8b(), name="hypros", tau=0.1)

    torchrun --nproc_per_node 8 -m torchtitan.train --module hypros_lm.integrations.torchtitan \\
        --config llama3_debugmodel_hypros --loss.objective.tau 0.15 --parallelism.tensor_parallel_degree 2

[`ScoringLoss`][hypros_lm.integrations.torchtitan.ScoringLoss] is a ``ChunkedLossWrapper`` to torchtitan's trainer,
so the trainer hands it the LM head and runs the model without it (``_skip_lm_head``), as for its chunked
cross-entropy. The loss scores the hidden states with the fused head inside a call of the head module, so FSDP2's
hooks unshard the weight and reduce its gradient as for a forward; under tensor parallelism the head's local rows
and the TP group go to the vocab-parallel head (``process_group=``), with torchtitan's DTensor and spmd-types
backends alike. The sum over the tokens is divided by torchtitan's global count of valid tokens, as its
cross-entropy is.

λ is a pure function of torchtitan's training step, which its trainer sets before every step
(``structured_logger.set_step``; after a resume, the checkpoint's step): step s (from 1) trains λ(s − 1), the
schedule of ``launch/pretrain.py``'s loop, so a resumed run follows the same λ. The objective's settings are the
``--loss.*`` settings of ``launch/pretrain.py`` (``LossSettings``); ``total_steps`` is the schedule's T and must
equal ``training.steps`` (a step past it is refused). Each call returns λ and the component means as metrics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, Shard

from hypros_lm.errors import InvalidValue, MissingPackage
from hypros_lm.scoring.api import components_of
from hypros_lm.scoring.fused import fused_linear_score
from hypros_lm.scoring.losses import LossSettings, build_objective


def _torchtitan():
    try:
        import spmd_types
        from torchtitan.components.loss import BaseLoss, ChunkedLossWrapper
        from torchtitan.distributed import spmd_types as titan_spmd
        from torchtitan.distributed.utils import get_spmd_backend
        from torchtitan.observability import structured_logger
    except ImportError as err:
        raise MissingPackage("hypros_lm.integrations.torchtitan needs torchtitan 0.3 (Python >= 3.11): bash "
                             "scripts/torchtitan_env.sh builds an environment with it and hypros-lm (or pip install "
                             "torchtitan==0.3.0 beside hypros-lm)") from err
    return BaseLoss, ChunkedLossWrapper, spmd_types, titan_spmd, get_spmd_backend, structured_logger


BaseLoss, ChunkedLossWrapper, spmd, _titan_spmd, _spmd_backend, _step_state = _torchtitan()


class ScoringLoss(ChunkedLossWrapper):
    """A scoring rule or HyProS mixture of the LM head, fused with it, as torchtitan's loss (see the module)."""

    @dataclass(kw_only=True, slots=True)
    class Config(BaseLoss.Config):
        objective: LossSettings = field(default_factory=LossSettings)
        """The objective and its settings, those of ``launch/pretrain.py --loss.*`` (name, t0, tau, bounded, alpha,
        z_loss, label_smoothing, chunk_size, ...)."""
        total_steps: int = 0
        """The schedule's T: the run's optimizer steps (``training.steps``)."""

    def __init__(self, config: Config, *, compile_config: Any = None):
        del compile_config  # the fused head is its own kernel: torchtitan's loss compilation does not apply
        if config.total_steps < 1:
            raise InvalidValue(f"loss.total_steps={config.total_steps}: set it to training.steps (the schedule's T), "
                               "e.g. with_scoring_loss(config) or --loss.total_steps with --training.steps")
        self.total_steps = config.total_steps
        self.objective = build_objective(config.objective, config.total_steps)
        self.options = config.objective.options()
        self.lm_head: nn.Module | None = None

    def lam(self) -> float:
        """λ of the step torchtitan's trainer is on (step s trains λ(s − 1))."""
        step = _step_state.get_step()
        if step is None:
            raise InvalidValue("no training step is set: torchtitan's trainer sets it before each step; outside it "
                               "call torchtitan.observability.structured_logger.set_step(step) first")
        if not 1 <= step <= self.total_steps:
            raise InvalidValue(f"step {step} lies outside loss.total_steps={self.total_steps}: set loss.total_steps "
                               "to training.steps")
        return float(self.objective.schedule(step - 1))

    def __call__(self, pred: Tensor, labels: Tensor, global_valid_tokens: Tensor | None = None,
                 **loss_inputs: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The summed score of the hidden states ``pred`` (the model run with ``_skip_lm_head``) at ``labels``,
        divided by ``global_valid_tokens``; and λ with the component means of this call as metrics."""
        del loss_inputs  # per-token extras (positions) do not change a token-level score
        head = self.lm_head
        if head is None:
            raise InvalidValue("ScoringLoss has no LM head: torchtitan's trainer sets it (set_lm_head) for a "
                               "ChunkedLossWrapper; outside the trainer call loss.set_lm_head(model.lm_head)")
        lam = self.lam()
        inner = head.__dict__.get("forward")  # torchtitan's parallelize() may have wrapped the forward
        head.forward = lambda hidden: self._score(head, hidden, labels, lam, global_valid_tokens)
        try:
            loss, metrics = head(pred)  # the module's hooks (FSDP2's unshard and gradient reduction) fire
        finally:
            if inner is None:
                del head.forward
            else:
                head.forward = inner
        return loss, metrics

    def _score(self, head: nn.Module, hidden: Tensor, labels: Tensor, lam: float,
               global_valid_tokens: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        tp_group = _spmd_tp_group()
        weight, group = _local_rows(head.weight, tp_group)
        bias = getattr(head, "bias", None)
        hidden, labels = _invariant(hidden, group, tp_group), _local(labels)
        with spmd.no_typecheck():
            out = fused_linear_score(
                hidden.flatten(0, -2), weight, labels.flatten(), lam=lam, bounded=self.objective.bounded,
                bias=None if bias is None else _local(bias), reduction="sum", options=self.options,
                process_group=group,
            )
            loss = out.loss if global_valid_tokens is None else out.loss / global_valid_tokens
        metrics = {f"hypros/{key}": value for key, value in components_of(out).items()}
        metrics["hypros/lambda"] = torch.tensor(lam)
        return loss, metrics


def _local(t: Tensor) -> Tensor:
    """A DTensor's local block (its gradient flows back with the same placements); a plain tensor as it is."""
    return t.to_local() if isinstance(t, DTensor) else t


def _spmd_tp_group() -> Any:
    """Under the spmd-types backend with tensor parallelism, the TP process group (else None)."""
    if _spmd_backend() == "spmd_types" and _titan_spmd.spmd_mesh_size("tp") > 1:
        return _titan_spmd.current_spmd_mesh().get_group("tp")
    return None


def _local_rows(weight: Tensor, tp_group: Any) -> tuple[Tensor, Any]:
    """The head's rows on this rank and the group its vocabulary is split over (None: whole here): a DTensor weight
    where it is sharded on its rows; under the spmd-types backend (``tp_group``: its TP group, if any), a weight that
    varies over the TP axis (its local block of rows)."""
    if isinstance(weight, DTensor):
        axes = [i for i, p in enumerate(weight.placements) if isinstance(p, Shard) and p.dim == 0]
        if len(axes) > 1:
            raise InvalidValue(f"the LM head's weight is sharded on its rows over {len(axes)} mesh axes "
                               f"({weight.placements}); the vocab-parallel head takes one")
        return weight.to_local(), (weight.device_mesh.get_group(axes[0]) if axes else None)
    if tp_group is not None:
        kind = spmd.get_local_type(weight).get(spmd.MeshAxis.of(tp_group))
        if kind is spmd.V or isinstance(kind, spmd.Shard):
            return weight, tp_group
    return weight, None


def _invariant(hidden: Tensor, group: Any, tp_group: Any) -> Tensor:
    """The hidden states as the head's gradient leaves them: the same on every rank of the TP group. The
    vocab-parallel head sums ∂h over its group itself; a replicated DTensor takes that as it is, and under the
    spmd-types backend the replicated (R) states are converted to invariant (I), whose gradient goes back as a
    partial sum that torchtitan's root norm reduces as it would the head's own."""
    if isinstance(hidden, DTensor):
        if group is not None and any(isinstance(p, Shard) for p in hidden.placements):
            raise InvalidValue(f"the hidden states reach the vocab-parallel head sharded ({hidden.placements}); "
                               "torchtitan's root norm replicates them before the LM head")
        return hidden.to_local()
    if tp_group is not None:
        return spmd.convert(hidden, tp_group, src=spmd.R, dst=spmd.I, expert_mode=True)
    return hidden


def with_scoring_loss(config: Any, **objective: Any) -> Any:
    """A torchtitan ``Trainer.Config`` with its loss replaced by [`ScoringLoss`][hypros_lm.integrations.torchtitan.
    ScoringLoss] of ``objective`` (``LossSettings`` fields: name, t0, tau, bounded, z_loss, ...; default HyProS),
    over ``config.training.steps``."""
    loss = ScoringLoss.Config(objective=LossSettings(**objective), total_steps=config.training.steps)
    return dataclasses.replace(config, loss=loss)


def llama3_debugmodel_hypros() -> Any:
    """torchtitan's Llama-3 debug model trained with HyProS (``--module hypros_lm.integrations.torchtitan
    --config llama3_debugmodel_hypros``)."""
    from torchtitan.models.llama3.config_registry import llama3_debugmodel

    return with_scoring_loss(llama3_debugmodel())


__all__ = ["ScoringLoss", "llama3_debugmodel_hypros", "with_scoring_loss"]
