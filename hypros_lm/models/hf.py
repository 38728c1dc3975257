"""The stack's one model class, and ``--model hf:<config.json, folder or hub name>``.

Every model the stack trains, a ladder rung (a ``LlamaForCausalLM``) or any ``hf:`` causal LM, is transformers'
own class (``AutoModelForCausalLM``), patched by the drop-in integration
([`patch_causal_lm()`][hypros_lm.integrations.transformers.patch_causal_lm]), so the fused score runs inside the
model's own ``lm_head`` forward: one code path for the stack, users' scripts and the export.
[`HFCausalLM`][hypros_lm.models.hf.HFCausalLM] gives it the stack's call,
``model(input_ids, targets, lam, mode=..., **head_options)``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import torch
import transformers.modeling_utils  # noqa: F401 - imported here, not first inside ZeRO-3's zero.Init (which breaks torch._dynamo's import)
from torch import Tensor, nn

from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.integrations.patch import body_hidden_states, check_patch, patch_causal_lm, router_aux_loss
from hypros_lm.scoring import ScoreOutput, ScoringOptions
from hypros_lm.scoring.fused import DEFAULT_SCORING
from hypros_lm.scoring.head import HeadMode

PREFIX = "hf:"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def param_shape(param: Tensor) -> torch.Size:
    """A parameter's full shape, also when it is a partitioned shard (ZeRO-3 keeps it in ``ds_shape``)."""
    return getattr(param, "ds_shape", param.shape)


def is_hf(name: str) -> bool:
    return name.startswith(PREFIX)


def hf_source(name: str) -> str:
    """The path or hub name after ``hf:``."""
    return name[len(PREFIX):]


def model_label(name: str) -> str:
    """A short name for run folders and tables: the rung, or an hf: model's folder or hub name without its owner
    (``hf:EleutherAI/pythia-160m`` → ``pythia-160m``; ``hf:configs/hf/llama.json`` → ``llama``)."""
    if not is_hf(name):
        return name
    path = Path(hf_source(name).rstrip("/"))
    if path.suffix == ".json":
        return path.parent.name if path.stem == "config" else path.stem
    return path.name


def hf_folder(name: str) -> Path | None:
    """The local folder of an ``hf:`` model (a config.json's folder), or None for a hub name."""
    path = Path(hf_source(name)).expanduser()
    if path.is_file():
        return path.parent
    return path if path.is_dir() else None


def has_weights(name: str) -> bool:
    """Whether an ``hf:`` model names pretrained weights: a local folder holding them, or a hub name."""
    if Path(hf_source(name)).expanduser().is_file():
        return False  # a bare config.json: randomly initialised
    folder = hf_folder(name)
    return folder is None or any((folder / f).is_file() for f in WEIGHT_FILES)


def hf_tokenizer(name: str) -> str | None:
    """Where the model's tokenizer is (its folder, or the hub name), or None when a local folder has none."""
    folder = hf_folder(name)
    if folder is None:
        return hf_source(name)
    return str(folder) if (folder / "tokenizer.json").is_file() else None


def hf_config(name: str):
    """The transformers config of an ``hf:`` model (a copy: callers may change it); read once per process, since
    the settings checks, the engine's buffer sizes and the model all ask for it. A clear error for a missing path
    or a model with no causal-LM class."""
    return copy.deepcopy(_read_config(name))


@functools.cache
def _read_config(name: str):
    from transformers import AutoConfig

    source = hf_source(name)
    path = Path(source).expanduser()
    looks_local = path.suffix == ".json" or source.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path.is_file() or (path / "config.json").is_file()):
        raise MissingFile(f"model.name={name!r}: no config.json at {path}; give a config.json, a folder "
                          f"holding one, or a hub name (online)")
    try:
        config = AutoConfig.from_pretrained(str(path) if looks_local else source)
    except OSError as err:
        raise MissingFile(f"model.name={name!r}: cannot read its config ({err}); offline, give a local folder "
                          f"(HF_HUB_OFFLINE is {os.environ.get('HF_HUB_OFFLINE', 'unset')})") from err
    _check_causal_lm(name, config)
    return config


def _check_causal_lm(name: str, config) -> None:
    """A config transformers builds no ``*ForCausalLM`` for (an encoder, an encoder-decoder) is named at once."""
    from transformers import AutoModelForCausalLM

    if type(config) not in AutoModelForCausalLM._model_mapping:
        raise InvalidValue(f"model.name={name!r} is a {config.model_type!r} model, which transformers has no causal LM "
                           f"class for; the stack trains decoder-only causal LMs (AutoModelForCausalLM)")


LEGACY_PREFIXES = (("body.", "lm.model."), ("head.weight", "lm.lm_head.weight"))
"""Parameter names in run folders of 0.1, when a rung was its own module (a Llama ``body`` and a scoring
``head``), and their names in [`HFCausalLM`][hypros_lm.models.hf.HFCausalLM] around a ``LlamaForCausalLM``."""


def current_names(state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """A state dict with the names of an older run folder ([`LEGACY_PREFIXES`][hypros_lm.models.hf.LEGACY_PREFIXES],
    after ``prefix``) renamed."""
    def renamed(name: str) -> str:
        for old, new in LEGACY_PREFIXES:
            if name.startswith(prefix + old):
                return prefix + new + name[len(prefix + old):]
        return name

    return {renamed(k): v for k, v in state.items()}


class HFCausalLM(nn.Module):
    """A patched transformers ``*ForCausalLM`` (``self.lm``, saved and exported as that class) with the
    stack's call: the body's final hidden states scored by the model's own head, never N×V logits."""

    def __init__(self, lm: nn.Module, *, options: ScoringOptions = DEFAULT_SCORING):
        super().__init__()
        self.lm = patch_causal_lm(lm, **dataclasses.asdict(options), verify=False)
        self.config = lm.config
        # an older run folder (DeepSpeed's resume, load_run) loads under today's names
        self._register_load_state_dict_pre_hook(_rename_legacy)

    def forward(self, input_ids: Tensor, targets: Tensor | None = None, lam: float | Tensor = 0.0, *,
                mode: HeadMode = "score", aux_weight: float = 1.0,
                **head_options: Any) -> ScoreOutput | dict[str, Tensor] | Tensor:
        """The head's ``mode`` on the body's final hidden states: the fused score of ``targets`` (a
        [`ScoreOutput`][hypros_lm.scoring.fused.ScoreOutput]), their per-token scores (``"tokens"``: a dict of 1-D
        tensors) or the logits (``"logits"``, of the ``columns`` given or all). ``aux_weight`` scales a mixture of
        experts' load-balancing term, a mean over this batch: the loop gives it 1/(micro-batches of the global batch)
        where the score is a sum over the global batch's tokens (``num_items_in_batch``)."""
        if mode != "logits" and targets is None:
            raise InvalidValue(f"mode={mode!r} scores targets, and none were given: pass targets, or mode='logits' "
                               "for the logits")
        body, hidden = body_hidden_states(self.lm, {"input_ids": input_ids, "use_cache": False})  # no KV cache to score
        head = self.lm.get_output_embeddings()
        if mode != "score":
            return head(hidden, hypros_targets=targets, hypros_state=self.lm.hypros, hypros_mode=mode, **head_options)
        out = head(hidden, hypros_targets=targets, hypros_state=self.lm.hypros, lam=lam, **head_options)
        aux = router_aux_loss(self.lm, body, None)
        if aux is not None:  # a mixture of experts' load-balancing term, as the model's own forward adds it
            out = out._replace(loss=out.loss + aux_weight * self.lm.router_aux_loss_coef * aux)
        return out

    def score_over(self, columns: Tensor | None) -> None:
        """Restrict the training score to these token ids (a classifier's label words)."""
        self.lm.hypros.score_columns = columns

    def initial_name(self, name: str) -> str:
        """The name parameter ``name`` draws its initial value under ([`initial_value()`][hypros_lm.models.lm.initial_value]):
        ``body.`` and its name in the base model, or ``head.weight`` for the output embedding. These are the names
        rungs were first released with, kept so that a seed gives the same initial weights in every release (and
        a Llama config equal to a rung the rung's)."""
        name = name.removeprefix("lm.")
        body = f"{self.lm.base_model_prefix}."
        if name.startswith(body):
            return "body." + name[len(body):]
        head = next(n for n, m in self.lm.named_modules() if m is self.lm.get_output_embeddings())
        return "head.weight" if name == f"{head}.weight" else f"lm.{name}"

    def num_parameters(self, *, embedding: bool = True) -> int:
        """All parameters (a tied weight once), or without the input embedding and the head (non-embedding)."""
        lookups = {id(m.weight) for m in (self.lm.get_input_embeddings(), self.lm.get_output_embeddings())}
        return sum(param_shape(p).numel() for p in self.parameters() if embedding or id(p) not in lookups)

    def check_head(self) -> str:
        """Once the weights are written: the patch's probe against the model's own forward (it raises on a
        mismatch), or what it relies on where the weights are partitioned. Returns the line to log."""
        return check_patch(self.lm)[1]


def build_hf_model(config, *, attention: str, options: ScoringOptions = DEFAULT_SCORING) -> HFCausalLM:
    """The architecture of an ``hf:`` config, freshly initialised (weights are written afterwards, one
    parameter at a time, so this also runs inside ZeRO-3's ``zero.Init``)."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    config.use_cache = False
    with no_init_weights():  # transformers' own init would index empty ZeRO-3 shards; the loop writes every weight
        lm = AutoModelForCausalLM.from_config(config, attn_implementation=attention, dtype=torch.float32)
    lm.tie_weights()  # what init_weights would have done besides initialising
    return HFCausalLM(lm, options=options)


def _rename_legacy(state: dict[str, Tensor], prefix: str, *_args: Any) -> None:
    renamed = current_names(state, prefix)
    if renamed.keys() != state.keys():
        state.clear()
        state.update(renamed)


def pretrained_weights(source: str | Path) -> dict[str, Tensor]:
    """An HF model's weights named as [`HFCausalLM`][hypros_lm.models.hf.HFCausalLM]'s parameters (``lm.…``), tied
    ones under each name."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    return {f"lm.{k}": v.detach() for k, v in lm.named_parameters(remove_duplicate=False)}
