"""HyProS for Hugging Face causal LMs: one call patches a model, one callback drives λ in ``Trainer``.

    from hypros_lm.integrations.transformers import HyProSCallback, patch_causal_lm

    model = patch_causal_lm(AutoModelForCausalLM.from_config(config))   # or a pretrained model
    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[HyProSCallback("hypros")])

A patched model's forward *with* ``labels`` (or ``shift_labels``) returns the fused score as ``loss``
and ``logits=None``: the (N, V) logits are never built. A forward without labels is the model's own,
so generation is untouched.

Any transformers causal LM whose output embedding is an ``nn.Linear`` over its ``base_model`` body is
patched, with the logit transforms its config declares (soft-cap, logit scale or multiplier,
``logits_scaling`` as a divisor; the head's bias and tied embeddings come with the module) and a
mixture-of-experts model's load-balancing loss added as its own forward adds it. There is no list of
architectures: the patch checks itself on a short probe (the fused head's logits and λ = 0 loss against
the model's own) and refuses a model whose head does something else.

The score is computed inside the output-embedding module's own forward (its ``forward`` is wrapped on
the instance): DeepSpeed ZeRO-3 and FSDP gather a module's parameters only around that module's
forward, so a head weight read from outside it would be an empty shard (TRL #3368).
"""

from __future__ import annotations

import math

from torch import nn

from hypros_lm.errors import InvalidValue, MissingPackage
from hypros_lm.integrations.patch import (
    CALIBRATION_BINS,
    ScoringState,
    body_hidden_states,
    causal_lm,
    check_patch,
    declared_logit_transform,
    find_state,
    patch_causal_lm,
    router_aux_loss,
)
from hypros_lm.scoring.api import LambdaSchedule


def _unwrapped(model: nn.Module) -> nn.Module:
    while getattr(model, "module", None) is not None and getattr(model, "hypros", None) is None:
        model = model.module
    return causal_lm(model)


def what_replaced_the_patch(model: nn.Module) -> str:
    """Why a patched model's training forwards were not scored by its head: what now stands for its forward."""
    forward = _unwrapped(model).__dict__.get("forward")
    function = getattr(forward, "__func__", forward)
    if function is not None and not getattr(function, "hypros_scored", False):
        code = function.__code__
        where = f"`{code.co_name}` ({code.co_filename}:{code.co_firstlineno})"
        if "trl" in code.co_filename.replace("\\", "/").split("/"):
            return (f"model.forward was replaced by {where}: TRL's own fused LM head, installed by its trainers, which "
                    f"computes −log p. Train with hypros_lm.integrations.trl.HyProSSFTTrainer instead")
        return f"model.forward was replaced by {where}, which does not score through the patched head"
    return ("the patched forward was not called with labels in training: the trainer computed its own loss (a "
            "compute_loss_func, label_smoothing_factor, or a compute_loss override). Leave the loss to the patched model")


def _callback_base():
    try:
        from transformers import TrainerCallback
    except ImportError as err:  # pragma: no cover - transformers is in the [hf] and [train] extras
        raise MissingPackage("HyProSCallback needs transformers: pip install 'transformers>=5,<6' accelerate (or the "
                             "checkout's [hf] extra)") from err
    return TrainerCallback


class HyProSCallback(_callback_base()):
    """Sets a patched model's λ from ``state.global_step / state.max_steps`` before every optimizer step,
    and adds ``hypros/lambda`` and each component's mean (``hypros/log``, ``hypros/<score>`` for each registered
    score's key and the bounded score's, ``hypros/entropy``, ``hypros/accuracy``) to the Trainer's logs; evaluation
    logs gain ``<prefix>_log`` (log-loss's token mean), ``<prefix>_<score>`` for the same scores and ``<prefix>_ece``
    (10 bins) from the fused pass.

    After every optimizer step it checks that the patched head scored each of the step's training forwards:
    a trainer that computed its own loss (TRL's fused head, a ``compute_loss_func``) stops training with an
    error that names what replaced the patch, instead of logging λ over another objective. A logged component that
    is not finite (the model diverged) is warned about and stops training.

    The Trainer calls callbacks in order, its reporting ones (wandb, TensorBoard) before those given
    in ``callbacks=``; [`add_hypros_callback()`][hypros_lm.integrations.transformers.add_hypros_callback] puts this
    one first so that they report λ too. ``loss`` is an objective of ``--loss`` (`hypros_lm.scoring.LOSSES`),
    ``params`` its schedule's parameters (fractions of max_steps) and, if given, its bounded score (``bounded``,
    ``alpha``); without them the objective mixes in the bounded score the model was patched with.
    """

    def __init__(self, loss: str = "hypros", **params: float):
        LambdaSchedule(loss, total_steps=1, **params)  # check the name and parameters now
        self.name, self.params = loss, params
        self.schedule: LambdaSchedule | None = None
        self.lam = 0.0
        self.micro_steps = 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        scoring = find_state(model)
        if scoring is None:
            raise InvalidValue("HyProSCallback needs a patched model: model = patch_causal_lm(model) before Trainer(...)")
        patched = {} if "bounded" in self.params else {"bounded": scoring.bounded.family, "alpha": scoring.bounded.alpha}
        self.schedule = LambdaSchedule(self.name, total_steps=max(state.max_steps, 1), **{**patched, **self.params})
        scoring.bounded = self.schedule.bounded
        scoring.scored_forwards, self.micro_steps = 0, 0

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.lam = self.schedule(state.global_step)
        find_state(model).lam = self.lam

    def on_substep_end(self, args, state, control, **kwargs):
        self.micro_steps += 1

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.micro_steps += 1
        scoring = find_state(model)
        if scoring.scored_forwards < self.micro_steps:
            raise RuntimeError(
                f"HyProSCallback: the patched head scored {scoring.scored_forwards} of the {self.micro_steps} training "
                f"forwards of step {state.global_step}, so this run trains another objective than the "
                f"{self.name!r} (λ = {self.lam:.3g}) it logs; {what_replaced_the_patch(model)}")
        scoring.scored_forwards, self.micro_steps = 0, 0

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if logs is None:
            return
        scoring = find_state(model)
        if "loss" in logs:  # a training log
            components = scoring.pop_components()  # warns where one is not finite
            extra = {"hypros/lambda": self.lam, **{f"hypros/{k}": v for k, v in components.items()}}
            if not all(map(math.isfinite, components.values())):
                control.should_training_stop = True  # a diverged run stops (its checkpoints so far are the good ones)
        else:  # an evaluation log: "<prefix>_loss" and the rest under that prefix
            prefix = next((k[: -len("_loss")] for k in logs if k.endswith("_loss")), None)
            scores = scoring.pop_evaluation() if prefix is not None else {}
            extra = {f"{prefix}_{k}": v for k, v in scores.items()}
        extend_logs(state, logs, extra)


def extend_logs(state, logs: dict[str, float], extra: dict[str, float]) -> None:
    """Add ``extra`` to a Trainer log being reported and to the history entry the Trainer already made of it."""
    logs.update(extra)
    if extra and state.log_history and state.log_history[-1].get("step") == state.global_step:
        state.log_history[-1].update(extra)


def add_hypros_callback(trainer, loss: str = "hypros", **params: float) -> HyProSCallback:
    """Add a [`HyProSCallback`][hypros_lm.integrations.transformers.HyProSCallback] training ``loss`` to ``trainer``
    ahead of its reporting callbacks; returns it."""
    callback = HyProSCallback(loss, **params)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback


__all__ = ["CALIBRATION_BINS", "HyProSCallback", "ScoringState", "add_hypros_callback", "body_hidden_states", "causal_lm",
           "check_patch", "declared_logit_transform", "extend_logs", "find_state", "patch_causal_lm", "router_aux_loss",
           "what_replaced_the_patch"]
