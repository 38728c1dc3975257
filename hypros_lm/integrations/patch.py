"""The drop-in patch of a Hugging Face causal LM (the core of
[`hypros_lm.integrations.transformers`][hypros_lm.integrations.transformers], which re-exports it with the Trainer
callback): the scoring state, the patched forward and head, and the probe that
checks the patch against the model's own forward."""

from __future__ import annotations

import functools
import inspect
import math
import sys
import types
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from hypros_lm.errors import InvalidValue
from hypros_lm.metrics.calibration import BinSums, ece_from_bins
from hypros_lm.scoring.fused import DEFAULT_SCORING, ScoreOutput, ScoringOptions, check_options, token_scores
from hypros_lm.scoring.head import HeadMode, head_logits, score_hidden
from hypros_lm.scoring.scores import DEFAULT_BOUNDED, Score, bounded_score

# forward arguments that belong to the loss, not to the model body
_LOSS_ARGUMENTS = ("labels", "shift_labels", "num_items_in_batch", "ignore_index", "logits_to_keep", "return_dict")
CALIBRATION_BINS = 10
"""Equal-width bins of the ECE that evaluation forwards of a patched model report."""


@dataclass
class ScoringState:
    """What a patched model scores with; set ``lam`` yourself in a plain loop (or let HyProSCallback)."""

    lam: float = 0.0
    bounded: Score = field(default_factory=lambda: bounded_score(DEFAULT_BOUNDED))
    """The registered bounded score λ weighs."""
    options: ScoringOptions = DEFAULT_SCORING
    """z-loss, label smoothing and chunking, as patch_causal_lm's keywords gave them (validated once)."""
    softcap: float | None = None
    logit_scale: float = 1.0
    ignore_index: int = -100
    score_columns: Tensor | None = None
    """Token ids the score is restricted to (a classifier's label words), or None for the whole vocabulary."""
    sums: dict[str, Tensor] = field(default_factory=dict)
    """Token-weighted component sums of the training forwards since the last ``pop_components``, kept as
    detached tensors on the model's device: no host synchronisation per forward, one when logged."""
    evaluation: dict[str, Tensor] = field(default_factory=dict)
    """The same for evaluation forwards (log-loss's, each registered score's and the ECE's bin sums), until ``pop_evaluation``."""
    scored_forwards: int = 0
    """Training forwards the fused head scored: HyProSCallback checks it against the trainer's micro-steps."""
    last: ScoreOutput | None = None
    """The last scoring pass (its loss detached), for a trainer that logs per batch (TRL's entropy and accuracy)."""

    def record(self, out: ScoreOutput) -> None:
        self.scored_forwards += 1
        _accumulate(self.sums, out, ("log", "entropy", "accuracy"))

    def record_evaluation(self, out: ScoreOutput) -> None:
        bins = out.calibration
        if bins is None:  # an evaluation forward with gradients: no calibration pass
            return
        _accumulate(self.evaluation, out, ("log",))
        self.evaluation["bins"] = self.evaluation["bins"] + bins if "bins" in self.evaluation else bins

    def pop_components(self) -> dict[str, float]:
        """Token-weighted means of each component since the last call (empty if nothing was scored); a warning
        names those that are not finite (the model diverged)."""
        sums, self.sums = self.sums, {}
        n = float(sums.pop("n_tokens", 0.0))
        means = {k: float(v) / n for k, v in sums.items()} if n else {}
        broken = {k: v for k, v in means.items() if not math.isfinite(v)}
        if broken:
            warnings.warn(f"hypros_lm: the fused head scored non-finite {broken}: the model diverged; lower the learning "
                          f"rate or clip gradients, and resume from a checkpoint before this", stacklevel=2)
        return means

    def pop_evaluation(self) -> dict[str, float]:
        """The token means of log-loss (``log``) and each registered score (by key), and the ECE, of the evaluation
        forwards since the last call."""
        sums, self.evaluation = self.evaluation, {}
        n = float(sums.pop("n_tokens", 0.0))
        if not n:
            return {}
        bins = sums.pop("bins")
        return {**{k: float(v) / n for k, v in sums.items()}, "ece": ece_from_bins(BinSums.from_stacked(bins))}


def _accumulate(sums: dict[str, Tensor], out: ScoreOutput, keys: tuple[str, ...]) -> None:
    """Add the token-weighted ``keys`` of a pass and each of its scores to ``sums``."""
    n = out.n_tokens.to(out.log.dtype)
    terms = {**{key: getattr(out, key).detach() * n for key in keys},
             **{key: value.detach() * n for key, value in out.scores.items()}, "n_tokens": n}
    for key, term in terms.items():
        sums[key] = sums[key] + term if key in sums else term


def patch_causal_lm(
    model: nn.Module,
    *,
    lam: float = 0.0,
    bounded: str | Score = DEFAULT_BOUNDED,
    alpha: float | None = None,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    score_smoothing: float = 0.0,
    chunk_size: int | None = None,
    verify: bool = True,
) -> nn.Module:
    """Make ``model`` (a transformers ``*ForCausalLM``, or a PEFT model wrapping one) score ``labels`` with the
    fused ``(1 − λ)·log + λ·bounded`` (+ z-loss) instead of cross-entropy over materialised logits; ``bounded`` is a
    registered score or score family of `hypros_lm.scoring.scores` (a family of order ``alpha``).

    λ = 0 (the default) is the model's own loss. Returns the same model; ``model.hypros`` is its
    [`ScoringState`][hypros_lm.integrations.patch.ScoringState]. Patching twice updates the state only. With
    ``verify`` (the default) the patch is checked on a short probe where the weights are materialised
    ([`check_patch()`][hypros_lm.integrations.patch.check_patch]): a head the fused score would not reproduce is
    refused with what differed.
    """
    lm = causal_lm(model)
    if not hasattr(lm, "base_model") or not callable(getattr(lm, "get_output_embeddings", None)):
        raise InvalidValue(f"patch_causal_lm takes a transformers *ForCausalLM; {type(lm).__name__} has no base_model "
                           "body and output embedding")
    body_of(lm)  # or a clear refusal
    head = lm.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise InvalidValue(f"{type(lm).__name__}'s output embedding is a {type(head).__name__}, not nn.Linear: the fused "
                           "head scores a linear layer (patch before a PEFT adapter or wrapper replaces the head)")
    partner = bounded_score(bounded, alpha)
    check_options(lam=lam)
    options = ScoringOptions(z_loss=z_loss, label_smoothing=label_smoothing, score_smoothing=score_smoothing,
                             chunk_size=chunk_size)
    logit_scale, softcap = declared_logit_transform(lm.config)
    state = ScoringState(lam=float(lam), bounded=partner, options=options, softcap=softcap, logit_scale=logit_scale)
    fresh = getattr(lm, "hypros", None) is None
    if fresh:
        _wrap_head(head)
        lm.forward = types.MethodType(_scored_forward(type(lm).forward), lm)
    lm.hypros = state
    if verify:
        try:
            verified, note = check_patch(lm)
        except ValueError:
            if fresh:  # refused: the model is left as it was given
                del lm.forward, lm.hypros, head.forward, head.hypros_wrapped
            raise
        if not verified:
            warnings.warn(note, stacklevel=2)
    return model


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers ``*ForCausalLM`` inside PEFT's wrappers (``PeftModel`` → ``LoraModel`` → the model), whose
    ``forward`` and output embedding are the ones to patch; any other model as it is."""
    if hasattr(model, "peft_config") and callable(getattr(model, "get_base_model", None)):
        return model.get_base_model()
    return model


def body_of(lm: nn.Module) -> nn.Module:
    """The body of a causal LM: the module whose output the output embedding reads. ``base_model`` where it is not
    the model itself (it resolves ``base_model_prefix``, and falls back to the model where that attribute is absent:
    ``Llama4ForCausalLM``'s prefix is ``language_model``, its body ``model``), else ``get_decoder()``, the ``model``
    attribute, or the one child that is a ``PreTrainedModel``; never the causal LM."""
    from transformers import PreTrainedModel

    decoder = lm.get_decoder() if callable(getattr(lm, "get_decoder", None)) else None
    for candidate in (getattr(lm, "base_model", None), decoder, getattr(lm, "model", None)):
        if isinstance(candidate, nn.Module) and candidate is not lm:
            return candidate
    children = [name for name, child in lm.named_children() if isinstance(child, PreTrainedModel)]
    if len(children) == 1:
        return getattr(lm, children[0])
    raise InvalidValue(f"patch_causal_lm cannot tell {type(lm).__name__}'s body: base_model and get_decoder() are the model "
                       f"itself, it has no 'model' attribute, and {len(children)} of its children are PreTrainedModels "
                       f"({children}); score its final hidden states yourself with hypros_lm.linear_scoring_loss")


def declared_logit_transform(config) -> tuple[float, float | None]:
    """(logit scale, soft-cap) that a config declares between the head's output and the logits:
    ``final_logit_softcapping`` (Gemma-2/3) or ``logits_soft_cap`` (RecurrentGemma); a multiplier under
    ``logit_scale`` (Cohere), ``output_multiplier`` or ``lm_head_multiplier`` (Falcon-H1); ``logits_scaling`` as a
    divisor (Granite, MiniCPM3; a multiplier for HyperCLOVA X). The probe of
    [`check_patch()`][hypros_lm.integrations.patch.check_patch] catches what no list of names does."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    softcap = next((getattr(text, name) for name in ("final_logit_softcapping", "logits_soft_cap")
                    if getattr(text, name, None) is not None), None)
    for name in ("logit_scale", "output_multiplier", "lm_head_multiplier"):
        if getattr(text, name, None) is not None:
            return float(getattr(text, name)), softcap
    scaling = getattr(text, "logits_scaling", None)
    if scaling is not None:
        return (float(scaling) if text.model_type == "hyperclovax" else 1.0 / float(scaling)), softcap
    return 1.0, softcap


def check_patch(model: nn.Module, *, tokens: int = 16) -> tuple[bool, str]:
    """Check a patched model's fused head against the model's own forward on a 2 × ``tokens`` probe: its logits
    and its λ = 0 loss must agree (within the dtype's rounding). Raises ``ValueError`` naming what differed.

    Returns (True, what was checked), or (False, what the patch relies on) where the weights are not here to
    probe (on the meta device, or partitioned by ZeRO-3 or FSDP)."""
    lm = causal_lm(model)
    state: ScoringState = lm.hypros
    declared = (f"logit scale {state.logit_scale:g}, soft-cap {state.softcap}, "
                f"head bias {'yes' if lm.get_output_embeddings().bias is not None else 'no'}")
    if not all(_materialised(p) for p in lm.parameters()):
        return False, (f"patch_causal_lm: {type(lm).__name__}'s weights are not materialised here (meta, or partitioned "
                       f"by ZeRO-3/FSDP), so the fused head was not probed against the model's own; it relies on the "
                       f"head being the config's declared transform of an nn.Linear ({declared}). Call "
                       f"hypros_lm.integrations.transformers.check_patch(model) once the weights are loaded to verify")
    try:
        own_logits, own_loss, fused_logits, fused_loss = _probe(lm, tokens)
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as err:
        raise InvalidValue(f"patch_causal_lm refuses {type(lm).__name__} (model_type={lm.config.model_type!r}): its probe "
                           f"of 2 × {tokens} tokens failed ({type(err).__name__}: {str(err).splitlines()[0]}) with the body "
                           f"{type(body_of(lm)).__name__} and the head {declared}; score its final hidden states yourself "
                           f"with hypros_lm.linear_scoring_loss") from err
    tolerance = 1e-4 if fused_logits.dtype in (torch.float32, torch.float64) else 3e-2
    largest = float(own_logits.abs().max().clamp(min=1.0))
    gap = float((fused_logits - own_logits).abs().max())
    problems = []
    if gap > tolerance * largest:
        problems.append(f"its logits differ from the model's own by up to {gap:.3g} (largest |logit| {largest:.3g})")
    if abs(float(fused_loss) - float(own_loss)) > tolerance * max(1.0, abs(float(own_loss))):
        problems.append(f"its λ = 0 loss is {float(fused_loss):.6g} where the model's own loss is {float(own_loss):.6g}")
    if problems:
        raise InvalidValue(
            f"patch_causal_lm refuses {type(lm).__name__} (model_type={lm.config.model_type!r}): on a probe of 2 × {tokens} "
            f"tokens the fused head, with what the config declares ({declared}), does not reproduce the model: "
            f"{'; '.join(problems)}. Its forward transforms the logits in a way the config does not declare; score its "
            f"hidden states yourself with hypros_lm.linear_scoring_loss (logit_scale=, softcap=)")
    return True, f"verified on a 2 × {tokens}-token probe: logits within {gap:.2g}, λ = 0 loss {float(fused_loss):.6g}"


def _materialised(param: Tensor) -> bool:
    return not (param.is_meta or hasattr(param, "ds_id") or param.numel() == 0 or hasattr(param, "device_mesh"))


def _probe(lm: nn.Module, tokens: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The model's own logits and loss, and the fused head's, on the same few token ids (eval mode, no grad)."""
    head = lm.get_output_embeddings()
    ids = ((torch.arange(2 * tokens, device=head.weight.device) * 7919 + 11) % head.weight.shape[0]).view(2, tokens)
    was_training = lm.training
    lm.eval()
    try:
        with torch.no_grad():
            own = type(lm).forward(lm, input_ids=ids, labels=ids, use_cache=False)
            named = {"input_ids": ids, "labels": ids}
            _, hidden = body_hidden_states(lm, named, {})
            fused_logits = head(hidden, hypros_state=lm.hypros, hypros_mode="logits")
            plain = replace(lm.hypros, lam=0.0, options=replace(lm.hypros.options, z_loss=0.0, label_smoothing=0.0,
                                                                      score_smoothing=0.0),
                            score_columns=None)  # the model's own loss
            fused = _score(lm, named, {}, state=plain, record=False)
    finally:
        lm.train(was_training)
    return own.logits.double(), own.loss.double(), fused_logits.double(), fused.loss.double()


def _wrap_head(head: nn.Linear) -> None:
    """The head's forward on this instance ([`_head_forward()`][hypros_lm.integrations.patch._head_forward]), bound as
    a method so that a copy of the model (``copy.deepcopy``: an EMA or reference model) scores with its own head's
    weights, not the original's."""
    head.forward = types.MethodType(_head_forward, head)
    head.hypros_wrapped = True


def _head_forward(head: nn.Linear, hidden: Tensor, *, hypros_state: ScoringState | None = None,
                  hypros_mode: HeadMode = "score", hypros_targets: Tensor | None = None,
                  num_items_in_batch: Tensor | int | None = None, **options: Any) -> Tensor | ScoreOutput | dict[str, Tensor]:
    """Plain logits (the model's own head), or, given the scoring state, what ``hypros_mode`` asks for
    ([`HeadMode`][hypros_lm.scoring.head.HeadMode]): the fused score of the targets (the training stack passes
    ``lam``, ``bounded`` and ``component_grad_norms`` per call), their per-token scores, or the transformed
    logits (of the ``columns`` given, or all)."""
    if hypros_state is None:
        return type(head).forward(head, hidden)
    s = hypros_state
    transform = {"bias": head.bias, "softcap": s.softcap, "logit_scale": s.logit_scale}
    if hypros_mode == "logits":
        return head_logits(hidden, head.weight, **transform, **options)
    if hypros_mode == "tokens":
        return token_scores(hidden, head.weight, hypros_targets, ignore_index=s.ignore_index,
                            chunk_size=s.options.chunk_size, bounded=options.get("bounded", s.bounded), **transform)
    return score_hidden(
        hidden, head.weight, hypros_targets, options.pop("lam", s.lam), options=s.options,
        bounded=options.pop("bounded", s.bounded), ignore_index=s.ignore_index, num_items_in_batch=num_items_in_batch,
        score_columns=s.score_columns, **transform, **options,
    )


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
    forward.hypros_scored = True  # what HyProSCallback looks for when a trainer's loss was not the patch's
    return forward


def body_hidden_states(model: nn.Module, named: dict[str, Any], extra: dict[str, Any] | None = None) -> tuple[Any, Tensor]:
    """The body's outputs and final hidden states for the forward's arguments (``named`` and ``extra``), asking for
    router logits where the model's own forward would (its config's ``output_router_logits``)."""
    body_args = {k: v for k, v in named.items() if k not in _LOSS_ARGUMENTS}
    body_args.update({k: v for k, v in (extra or {}).items() if k not in _LOSS_ARGUMENTS})
    if _takes_router_logits(type(model)):
        routed = body_args.get("output_router_logits")
        body_args["output_router_logits"] = getattr(model.config, "output_router_logits", False) if routed is None else routed
    body = body_of(model)
    body_out = body(**_accepted(body, body_args))
    return body_out, body_out[0]


@functools.cache
def _takes_router_logits(cls: type) -> bool:
    """Whether a causal-LM class's forward takes ``output_router_logits`` (read once per class, not per forward)."""
    return "output_router_logits" in inspect.signature(cls.forward).parameters


def _score(model: nn.Module, named: dict[str, Any], extra: dict[str, Any], *, state: ScoringState | None = None,
           record: bool = True):
    from transformers.modeling_outputs import CausalLMOutputWithPast, MoeCausalLMOutputWithPast

    state = state or model.hypros
    labels, shift_labels = named.get("labels"), extra.get("shift_labels")
    return_dict = named.get("return_dict", extra.get("return_dict"))
    inputs = named.get("input_ids", named.get("inputs_embeds"))
    if labels is not None and inputs is not None and tuple(labels.shape) != tuple(inputs.shape[: labels.dim()]):
        raise InvalidValue(f"labels of shape {tuple(labels.shape)} for input_ids of shape {tuple(inputs.shape[:2])}: a "
                           f"causal LM takes one label per input token (the ids themselves, -100 where ignored) and shifts "
                           f"them itself; pass shift_labels for labels already shifted")
    body_out, hidden = body_hidden_states(model, named, extra)
    if shift_labels is None:  # position i predicts label i + 1, as transformers' ForCausalLMLoss
        shift_labels = nn.functional.pad(labels, (0, 1), value=state.ignore_index)[..., 1:]
    head = model.get_output_embeddings()
    if not getattr(head, "hypros_wrapped", False):
        raise RuntimeError(f"{type(model).__name__}'s output embedding is now a {type(head).__name__}, not the head "
                           f"patch_causal_lm wrapped: it was replaced after patching (a PEFT adapter or modules_to_save "
                           f"on lm_head, resize_token_embeddings). Patch again after the change")
    training = model.training and torch.is_grad_enabled()
    options = {"calibration_bins": CALIBRATION_BINS} if record and not torch.is_grad_enabled() else {}
    out = head(hidden, hypros_targets=shift_labels.to(hidden.device), hypros_state=state,
               num_items_in_batch=extra.get("num_items_in_batch"), **options)
    if record:
        state.record(out) if training else state.record_evaluation(out)
        state.last = out._replace(loss=out.loss.detach())
    loss, aux = out.loss, router_aux_loss(model, body_out, named.get("attention_mask"))
    output_type = CausalLMOutputWithPast if aux is None else MoeCausalLMOutputWithPast
    if aux is not None:
        loss = loss + model.router_aux_loss_coef * aux.to(loss.device)
    fields = output_type.__dataclass_fields__
    passed = {k: v for k, v in body_out.items() if k in fields and k not in ("loss", "logits")}
    result = output_type(loss=loss, logits=None, **passed, **({} if aux is None else {"aux_loss": aux}))
    return result if return_dict is not False else result.to_tuple()


def router_aux_loss(model: nn.Module, body_out: Any, attention_mask: Tensor | None) -> Tensor | None:
    """A mixture-of-experts model's load-balancing loss, computed by its own module's function as its forward does
    (None where the model has no such function or coefficient)."""
    router_logits = getattr(body_out, "router_logits", None)
    if router_logits is None:
        return None
    balance = getattr(sys.modules[type(model).__module__], "load_balancing_loss_func", None)
    if balance is None or not hasattr(model, "router_aux_loss_coef"):
        return None  # its own forward adds none either (DeepSeek-V3 balances without one); the probe checks the claim
    text = model.config.get_text_config()
    experts = getattr(model, "num_experts", None) or getattr(text, "num_local_experts", None) or text.num_experts
    return balance(router_logits, experts, getattr(model, "num_experts_per_tok", text.num_experts_per_tok), attention_mask)


def _accepted(module: nn.Module, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments the body's forward takes (all of them when it takes **kwargs)."""
    params = inspect.signature(module.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return arguments
    return {k: v for k, v in arguments.items() if k in params}


def find_state(model: nn.Module) -> ScoringState | None:
    """The ScoringState of a patched model, through DeepSpeed/DDP/accelerate (``.module``) and PEFT wrappers."""
    while model is not None:
        state = getattr(causal_lm(model), "hypros", None)
        if isinstance(state, ScoringState):
            return state
        model = getattr(model, "module", None)
    return None
