"""Parameters of each ladder rung at the two vocabularies the project uses (8,192: the CPU runs' BPE;
50,304: GPT-2's, padded, as on a cluster), counted on the meta device (nothing is allocated).

    python benchmarks/model_sizes.py > docs/benchmarks/model-sizes.txt
"""

from __future__ import annotations

import torch

from hypros_lm.models import MODEL_SIZES, ModelSettings, build_model
from hypros_lm.models.ladder import SCALING_WIDTHS

SCALING_RUNGS = {f"w{width}" for width in SCALING_WIDTHS}

VOCABS = (8192, 50304)


def parameters(name: str, vocab: int) -> int:
    with torch.device("meta"):
        model = build_model(ModelSettings(name=name), vocab)
    return sum({id(p): p.numel() for p in model.parameters()}.values())


def main() -> None:
    print("# benchmarks/model_sizes.py: parameters per rung (embeddings and head included, untied)")
    print("| rung | layers | width | at vocab 8,192 | at vocab 50,304 |")
    print("|---|---:|---:|---:|---:|")
    for name, size in MODEL_SIZES.items():
        if name in SCALING_RUNGS:
            continue  # the scaling family w8 … w112 is sized for its own 512-token vocabulary (docs/studies.md)
        counts = " | ".join(f"{parameters(name, v) / 1e6:.1f}M" for v in VOCABS)
        print(f"| {name} | {size.num_layers} | {size.hidden_size} | {counts} |")


if __name__ == "__main__":
    main()
