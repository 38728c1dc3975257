"""Attention backend choice: flash-attention 2 when it imports on CUDA, PyTorch SDPA otherwise."""

from __future__ import annotations

from typing import Literal

import torch

from hypros_lm.errors import InvalidValue, MissingPackage

Attention = Literal["auto", "sdpa", "flash_attention_2", "eager"]


def flash_attention_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_attention(requested: Attention, *, half_precision: bool = True) -> str:
    """The transformers ``attn_implementation`` to use. flash-attention 2 runs only in fp16/bf16, so
    ``auto`` picks it for half-precision runs on CUDA when it imports; otherwise PyTorch SDPA."""
    if requested == "auto":
        return "flash_attention_2" if half_precision and flash_attention_available() else "sdpa"
    if requested == "flash_attention_2" and not half_precision:
        raise InvalidValue("model.attention=flash_attention_2 needs half precision: add --precision bf16, "
                           "or use model.attention=auto/sdpa for fp32")
    if requested == "flash_attention_2" and not flash_attention_available():
        raise MissingPackage(
            "model.attention=flash_attention_2 needs CUDA and the flash-attn package: "
            "pip install flash-attn --no-build-isolation (or the checkout's [gpu] extra), "
            "or use model.attention=auto to fall back to PyTorch SDPA"
        )
    return requested
