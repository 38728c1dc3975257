"""Model settings, the ladder rungs as Llama configs, initial values, FLOPs, and building the one model class."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from transformers import LlamaConfig

from hypros_lm.errors import InvalidValue
from hypros_lm.models.attention import Attention, resolve_attention
from hypros_lm.models.hf import HFCausalLM, build_hf_model, hf_config, is_hf, param_shape
from hypros_lm.models.ladder import MODEL_SIZES, get_model_size
from hypros_lm.scoring import ScoringOptions
from hypros_lm.scoring.fused import DEFAULT_SCORING


@dataclass(kw_only=True)
class ModelSettings:
    name: str = "nano"
    """Rung of the size ladder (nano, micro, mini, tiny, small, medium, base, big, large; the scaling family
    w8 … w112), or hf:<config.json, folder or hub name>
    for any Hugging Face causal LM the drop-in patch takes (checked against the model's own forward once its
    weights are written); a folder with weights starts from them, its tokenizer is used."""
    attention: Attention = "auto"
    """auto (flash-attention 2 on CUDA when installed, else SDPA), sdpa, flash_attention_2 or eager."""
    activation_checkpointing: bool = False
    """Recompute each layer's activations in backward to save memory."""
    tie_embeddings: bool = False
    """Share the input embedding with the scoring head's weight."""
    vocab_size: int | None = None
    """Model vocabulary; None takes the tokenizer's, rounded up to a multiple of 64."""

    def __post_init__(self) -> None:
        if not is_hf(self.name):
            get_model_size(self.name)
        elif self.tie_embeddings or self.vocab_size is not None:
            raise InvalidValue(f"model.tie_embeddings and model.vocab_size do not apply to {self.name}: an hf: model's "
                               f"config decides both; leave them unset")
        if self.attention not in ("auto", "sdpa", "flash_attention_2", "eager"):
            raise InvalidValue(f"model.attention={self.attention!r}; use auto, sdpa, flash_attention_2 or eager")


def model_vocab_size(settings: ModelSettings, tokenizer_vocab: int) -> int:
    """The model's vocabulary for a tokenizer; raises if a fixed size cannot hold the tokenizer's ids."""
    if is_hf(settings.name):
        return _hf_vocab_size(settings.name, hf_config(settings.name), tokenizer_vocab)
    if settings.vocab_size is None:
        return -(-tokenizer_vocab // 64) * 64
    if settings.vocab_size < tokenizer_vocab:
        raise InvalidValue(
            f"model.vocab_size={settings.vocab_size} cannot hold the tokenizer's {tokenizer_vocab} ids; "
            f"set model.vocab_size >= {tokenizer_vocab} or leave it unset to follow the tokenizer"
        )
    return settings.vocab_size


def _hf_vocab_size(name: str, config, tokenizer_vocab: int) -> int:
    if config.vocab_size < tokenizer_vocab:
        raise InvalidValue(f"{name}'s vocabulary of {config.vocab_size} cannot hold the tokenizer's {tokenizer_vocab} "
                           f"ids; give its own tokenizer (a tokenizer.json in its folder, or data.tokenizer) or a "
                           f"smaller data.vocab_size")
    return config.vocab_size


def llama_config(settings: ModelSettings, vocab_size: int) -> LlamaConfig:
    """A rung of the ladder as the transformers Llama config it is trained as."""
    size = MODEL_SIZES[settings.name]
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=size.hidden_size, num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads, num_key_value_heads=size.num_heads, intermediate_size=size.intermediate_size,
        max_position_embeddings=size.max_positions, tie_word_embeddings=settings.tie_embeddings, use_cache=False,
    )


INIT_STD = 0.02


def initial_value(name: str, shape: tuple[int, ...], seed: int) -> Tensor:
    """The initial fp32 value of parameter ``name``: a pure function of (seed, name, shape).

    Weight matrices are N(0, 0.02²) as in Llama/GPT-2; biases are zeros and the other 1-D parameters (norm
    gains) ones. Drawing each parameter from its own seeded generator, rather than in module-construction
    order, makes a model built whole and one built already partitioned (ZeRO-3's ``zero.Init``, written one
    parameter at a time) start from the same weights.
    """
    if len(shape) == 1:
        return torch.zeros(shape) if name.endswith(".bias") else torch.ones(shape)
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{name}".encode()))  # the CPU generator keeps 32 bits
    return torch.empty(shape).normal_(0.0, INIT_STD, generator=gen)


def matmul_parameters(model: nn.Module) -> int:
    """Parameters that take part in matrix multiplies: every weight matrix of the model, but not the input
    embedding tables (lookups: token and, in GPT-2, position embeddings) unless one is tied to the head, and
    not the 1-D norm gains and biases. Counted from the model itself, so it holds for any architecture."""
    head = model.lm.get_output_embeddings().weight
    lookups = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} - {id(head)}
    return sum(param_shape(p).numel() for p in model.parameters() if len(param_shape(p)) >= 2 and id(p) not in lookups)


def flops_per_token(model: nn.Module, seq_len: int) -> int:
    """Model FLOPs of one token's forward and backward pass, as in PaLM (Chowdhery et al. 2022), appendix B:

        6·N + 12·L·H·Q·T

    N: parameters in matrix multiplies ([`matmul_parameters()`][hypros_lm.models.lm.matmul_parameters]), 2 FLOPs each
    forward and 4 backward; L layers, H heads of dimension Q (from the model's config), T the sequence length: the
    attention scores Q·Kᵀ and the weighted sum with V, 4·H·Q·T per layer forward, twice that backward, counted in full (not
    halved by the causal mask). Recomputation under activation checkpointing is not counted: these are model
    FLOPs, the numerator of MFU.
    """
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = 12 * config.num_hidden_layers * config.num_attention_heads * head_dim * seq_len
    return 6 * matmul_parameters(model) + attention


def model_dimensions(settings: ModelSettings) -> tuple[int, int]:
    """(hidden size, positions) of a rung or an ``hf:`` config, known before the model is built."""
    if is_hf(settings.name):
        config = hf_config(settings.name)
        return config.hidden_size, config.max_position_embeddings
    size = get_model_size(settings.name)
    return size.hidden_size, size.max_positions


def build_model(
    settings: ModelSettings, tokenizer_vocab: int, *, options: ScoringOptions = DEFAULT_SCORING,
    half_precision: bool = False, attention: str | None = None, config: Any = None,
) -> HFCausalLM:
    """A ladder rung (a ``LlamaForCausalLM``) or an ``hf:`` model, as [`HFCausalLM`][hypros_lm.models.hf.HFCausalLM],
    freshly initialised, scoring with ``options`` (the run's ``--loss.*``). ``config`` replaces the config an ``hf:``
    name points to (a run folder's saved copy)."""
    attn = attention or resolve_attention(settings.attention, half_precision=half_precision)
    if is_hf(settings.name):
        config = config if config is not None else hf_config(settings.name)
        _hf_vocab_size(settings.name, config, tokenizer_vocab)
    else:
        config = llama_config(settings, model_vocab_size(settings, tokenizer_vocab))
    model = build_hf_model(config, attention=attn, options=options)
    if settings.activation_checkpointing:
        model.lm.base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def count_parameters(settings: ModelSettings, tokenizer_vocab: int) -> tuple[int, int]:
    """(total, non-embedding) parameters of a model, counted on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        model = build_model(replace(settings, activation_checkpointing=False), tokenizer_vocab, attention="sdpa")
    return model.num_parameters(), model.num_parameters(embedding=False)


__all__ = ["ModelSettings", "build_model", "count_parameters", "flops_per_token", "initial_value", "llama_config",
           "matmul_parameters", "model_dimensions", "model_vocab_size", "param_shape"]
