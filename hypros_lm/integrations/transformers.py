"""HyProS for Hugging Face causal LMs: one call patches a model, one callback drives λ in ``Trainer``.

    from hypros_lm.integrations.transformers import HyProSCallback, patch_causal_lm

    model = patch_causal_lm(AutoModelForCausalLM.from_config(config))   # or a pretrained model
    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[HyProSCallback("hypros")])

A patched model's forward *with* ``labels`` (or ``shift_labels``) returns the fused score as ``loss``
and ``logits=None``: the (N, V) logits are never built. A forward without labels is the model's own,
so generation and evaluation are untouched.

The score is computed inside the output-embedding module's own forward (its ``forward`` is wrapped on
the instance): DeepSpeed ZeRO-3 and FSDP gather a module's parameters only around that module's
forward, so a head weight read from outside it would be an empty shard (TRL #3368). The head's bias,
a tied embedding and the config's final-logit soft-capping (Gemma-2) are honoured; an architecture
whose head does anything else is refused rather than silently scored differently.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from hypros_lm.scoring.api import LambdaSchedule
from hypros_lm.scoring.fused import ScoreOutput
from hypros_lm.scoring.head import score_hidden

# config.model_type of the architectures whose causal-LM head is `lm_head(hidden)` (+ Gemma-2's soft-cap)
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "gpt2", "gpt_neox", "gemma2")
# forward arguments that belong to the loss, not to the model body
_LOSS_ARGUMENTS = ("labels", "shift_labels", "num_items_in_batch", "ignore_index", "logits_to_keep", "return_dict")


@dataclass
class ScoringState:
    """What a patched model scores with; set ``lam`` yourself in a plain loop (or let HyProSCallback)."""

    lam: float = 0.0
    bounded: str = "brier"
    z_loss: float = 0.0
    label_smoothing: float = 0.0
    chunk_size: int | None = None
    softcap: float | None = None
    ignore_index: int = -100
    score_columns: Tensor | None = None
    """Token ids the score is restricted to (a classifier's label words), or None for the whole vocabulary."""
    sums: dict[str, Tensor] = field(default_factory=dict)
    """Token-weighted component sums of the training forwards since the last ``pop_components``, kept as
    detached tensors on the model's device: no host synchronisation per forward, one when logged."""

    def record(self, out: ScoreOutput) -> None:
        n = out.n_tokens.to(out.log.dtype)
        for key, value in (("log", out.log), ("brier", out.brier), ("spherical", out.spherical),
                           ("entropy", out.entropy), ("accuracy", out.accuracy), ("n_tokens", None)):
            term = n if value is None else value.detach() * n
            self.sums[key] = self.sums[key] + term if key in self.sums else term

    def pop_components(self) -> dict[str, float]:
        """Token-weighted means of each component since the last call (empty if nothing was scored)."""
        sums, self.sums = self.sums, {}
        n = float(sums.pop("n_tokens", 0.0))
        return {k: float(v) / n for k, v in sums.items()} if n else {}


def patch_causal_lm(
    model: nn.Module,
    *,
    lam: float = 0.0,
    bounded: str = "brier",
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
) -> nn.Module:
    """Make ``model`` (a transformers ``*ForCausalLM`` instance) score ``labels`` with the fused
    ``(1 − λ)·log + λ·bounded`` (+ z-loss) instead of cross-entropy over materialised logits.

    λ = 0 (the default) is the model's own loss. Returns the same model; ``model.hypros`` is its
    :class:`ScoringState`. Patching twice updates the state only.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"patch_causal_lm supports {', '.join(SUPPORTED_MODEL_TYPES)} causal LMs; got "
            f"{type(model).__name__} (model_type={model_type!r}). Its head may transform logits in a way the fused "
            "score would not reproduce; use hypros_lm.linear_scoring_loss on its hidden states and head yourself")
    if bounded not in ("brier", "spherical"):
        raise ValueError(f"bounded={bounded!r}; use 'brier' or 'spherical'")
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"{type(model).__name__}'s output embedding is a {type(head).__name__}, not nn.Linear")
    state = ScoringState(lam=float(lam), bounded=bounded, z_loss=z_loss, label_smoothing=label_smoothing,
                         chunk_size=chunk_size, softcap=getattr(model.config, "final_logit_softcapping", None))
    if getattr(model, "hypros", None) is None:
        _wrap_head(head)
        model.forward = types.MethodType(_scored_forward(type(model).forward), model)
    model.hypros = state
    return model


def _wrap_head(head: nn.Linear) -> None:
    """The head's forward on this instance: plain logits, or, given the scoring state, what
    :func:`~hypros_lm.scoring.head.score_hidden` returns for the targets and options (the training stack
    passes ``lam``, ``bounded``, ``per_token``, ``columns`` and ``component_grad_norms`` per call)."""
    plain = head.forward

    def forward(hidden: Tensor, *, hypros_targets: Tensor | None = None, hypros_state: ScoringState | None = None,
                num_items_in_batch: Tensor | int | None = None, **options: Any) -> Tensor | ScoreOutput:
        if hypros_state is None:
            return plain(hidden)
        s = hypros_state
        return score_hidden(
            hidden, head.weight, hypros_targets, options.pop("lam", s.lam), bias=head.bias,
            bounded=options.pop("bounded", s.bounded), ignore_index=s.ignore_index,
            num_items_in_batch=num_items_in_batch, label_smoothing=s.label_smoothing, z_loss=s.z_loss,
            softcap=s.softcap, chunk_size=s.chunk_size, score_columns=s.score_columns, **options,
        )

    head.forward = forward


def _scored_forward(original):
    """The patched ``*ForCausalLM.forward``: the body, then the head's fused score on shifted labels."""
    signature = inspect.signature(original)

    def forward(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs).arguments
        extra = dict(bound.pop("kwargs", {}))
        labels, shift_labels = bound.get("labels"), extra.get("shift_labels")
        if labels is None and shift_labels is None:
            return original(self, *args, **kwargs)
        return _score(self, {k: v for k, v in bound.items() if k != "self"}, extra)

    forward.__signature__ = signature  # Trainer reads it (**kwargs: it passes num_items_in_batch)
    forward.__doc__ = original.__doc__
    return forward


def _score(model: nn.Module, named: dict[str, Any], extra: dict[str, Any]):
    from transformers.modeling_outputs import CausalLMOutputWithPast

    state: ScoringState = model.hypros
    labels, shift_labels = named.get("labels"), extra.get("shift_labels")
    num_items = extra.get("num_items_in_batch")
    return_dict = named.get("return_dict", extra.get("return_dict"))
    body_args = {k: v for k, v in named.items() if k not in _LOSS_ARGUMENTS}
    body_args.update({k: v for k, v in extra.items() if k not in _LOSS_ARGUMENTS})
    body_out = model.base_model(**_accepted(model.base_model, body_args))
    hidden = body_out[0]
    if shift_labels is None:  # position i predicts label i + 1, as transformers' ForCausalLMLoss
        shift_labels = nn.functional.pad(labels, (0, 1), value=state.ignore_index)[..., 1:]
    head = model.get_output_embeddings()
    out = head(hidden, hypros_targets=shift_labels.to(hidden.device), hypros_state=state, num_items_in_batch=num_items)
    if model.training and torch.is_grad_enabled():
        state.record(out)
    fields = CausalLMOutputWithPast.__dataclass_fields__
    passed = {k: v for k, v in body_out.items() if k in fields and k not in ("loss", "logits")}
    result = CausalLMOutputWithPast(loss=out.loss, logits=None, **passed)
    return result if return_dict is not False else result.to_tuple()


def _accepted(module: nn.Module, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments the body's forward takes (all of them when it takes **kwargs)."""
    params = inspect.signature(module.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return arguments
    return {k: v for k, v in arguments.items() if k in params}


def _find_state(model: nn.Module) -> ScoringState | None:
    """The ScoringState of a patched model, through DeepSpeed/DDP/accelerate wrappers (``.module``)."""
    while model is not None:
        state = getattr(model, "hypros", None)
        if isinstance(state, ScoringState):
            return state
        model = getattr(model, "module", None)
    return None


def _callback_base():
    try:
        from transformers import TrainerCallback
    except ImportError as err:  # pragma: no cover - transformers is in the [hf] and [train] extras
        raise ImportError("HyProSCallback needs transformers: pip install 'hypros-lm[hf]'") from err
    return TrainerCallback


class HyProSCallback(_callback_base()):
    """Sets a patched model's λ from ``state.global_step / state.max_steps`` before every optimizer step,
    and adds ``hypros/lambda`` and each component's mean (``hypros/log``, ``hypros/brier``,
    ``hypros/spherical``, ``hypros/entropy``, ``hypros/accuracy``) to the Trainer's logs.

    The Trainer calls callbacks in order, its reporting ones (wandb, TensorBoard) before those given
    in ``callbacks=``; :func:`add_hypros_callback` puts this one first so that they report λ too.
    ``schedule`` is a :class:`LambdaSchedule` name, ``params`` its parameters (fractions of max_steps).
    """

    def __init__(self, schedule: str = "hypros", **params: float):
        LambdaSchedule(schedule, total_steps=1, **params)  # check the name and parameters now
        self.name, self.params = schedule, params
        self.schedule: LambdaSchedule | None = None
        self.lam = 0.0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.schedule = LambdaSchedule(self.name, total_steps=max(state.max_steps, 1), **self.params)
        scoring = _find_state(model)
        if scoring is None:
            raise ValueError("HyProSCallback needs a patched model: model = patch_causal_lm(model) before Trainer(...)")
        scoring.bounded = self.schedule.bounded

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.lam = self.schedule(state.global_step)
        _find_state(model).lam = self.lam

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if logs is None or "loss" not in logs:  # training logs only (not evaluation or the final summary)
            return
        scoring = _find_state(model)
        extra = {"hypros/lambda": self.lam, **{f"hypros/{k}": v for k, v in scoring.pop_components().items()}}
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)


def add_hypros_callback(trainer, schedule: str = "hypros", **params: float) -> HyProSCallback:
    """Add a :class:`HyProSCallback` to ``trainer`` ahead of its reporting callbacks; returns it."""
    callback = HyProSCallback(schedule, **params)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback


__all__ = ["SUPPORTED_MODEL_TYPES", "HyProSCallback", "ScoringState", "add_hypros_callback", "patch_causal_lm"]
