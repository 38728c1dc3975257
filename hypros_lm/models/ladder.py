"""The model size ladder: Llama-style decoders (RoPE, RMSNorm, SwiGLU) picked by name."""

from __future__ import annotations

from dataclasses import dataclass

from hypros_lm.errors import InvalidValue


@dataclass(frozen=True)
class ModelSize:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int


# CPU-sized rungs first; `large` is ≈ 500M parameters with a 50k vocabulary.
MODEL_SIZES: dict[str, ModelSize] = {
    "nano": ModelSize(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=176, max_positions=512),
    "micro": ModelSize(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=352, max_positions=1024),
    "mini": ModelSize(hidden_size=192, num_layers=4, num_heads=6, intermediate_size=512, max_positions=1024),
    "tiny": ModelSize(hidden_size=256, num_layers=6, num_heads=8, intermediate_size=688, max_positions=1024),
    "small": ModelSize(hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1376, max_positions=2048),
    "medium": ModelSize(hidden_size=640, num_layers=10, num_heads=10, intermediate_size=1728, max_positions=2048),
    "base": ModelSize(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2048, max_positions=2048),
    "big": ModelSize(hidden_size=1024, num_layers=16, num_heads=16, intermediate_size=2752, max_positions=2048),
    "large": ModelSize(hidden_size=1280, num_layers=20, num_heads=20, intermediate_size=3456, max_positions=2048),
}

SCALING_WIDTHS = (8, 16, 24, 40, 56, 80, 96, 112)
"""The widths of the scaling family ``w<d>``: each about twice the previous one's parameters with a 512-token
vocabulary and tied embeddings (7.4k to 667k parameters; w96 between w80 and w112)."""


def scaling_rung(width: int) -> ModelSize:
    """A rung of the scaling family by one rule: 4 layers, heads of dimension 8, SwiGLU width 8·⌈width/3⌉ (≈ 8/3 of
    the width, as Llama's), only the width grows."""
    return ModelSize(hidden_size=width, num_layers=4, num_heads=width // 8, intermediate_size=8 * -(-width // 3),
                     max_positions=512)


MODEL_SIZES.update({f"w{width}": scaling_rung(width) for width in SCALING_WIDTHS})


def get_model_size(name: str) -> ModelSize:
    if name not in MODEL_SIZES:
        raise InvalidValue(f"unknown model {name!r}; choose one of {list(MODEL_SIZES)}")
    return MODEL_SIZES[name]
