"""Models: the size ladder, and the one model class every rung and hf: model is trained as."""

from hypros_lm.models.attention import resolve_attention
from hypros_lm.models.hf import HFCausalLM, has_weights, hf_config, hf_tokenizer, is_hf
from hypros_lm.models.ladder import MODEL_SIZES, ModelSize, get_model_size
from hypros_lm.models.lm import (
    ModelSettings,
    build_model,
    count_parameters,
    flops_per_token,
    initial_value,
    llama_config,
    matmul_parameters,
    model_dimensions,
    model_vocab_size,
    param_shape,
)

__all__ = [
    "MODEL_SIZES", "HFCausalLM", "ModelSettings", "ModelSize", "build_model", "count_parameters", "flops_per_token", "get_model_size",
    "has_weights", "hf_config", "hf_tokenizer", "initial_value", "is_hf", "llama_config", "matmul_parameters",
    "model_dimensions", "model_vocab_size", "param_shape", "resolve_attention",
]
