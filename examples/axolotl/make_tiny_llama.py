"""Writes tiny-llama/: the small Llama config and WikiText tokenizer the Axolotl examples start from on CPU.

    python examples/axolotl/make_tiny_llama.py        # in the project's .venv; the folder is committed

No weights: the examples set ``reinit_weights: true`` (Axolotl builds the model from config.json, randomly
initialised). With a real model, set ``base_model`` to its hub id or folder and drop ``reinit_weights``.
"""

from __future__ import annotations

from pathlib import Path

from transformers import LlamaConfig, PreTrainedTokenizerFast

from hypros_lm.data.sources import data_dir
from hypros_lm.data.tokenizer import EOS, train_bpe

OUT = Path(__file__).parent / "tiny-llama"


def main() -> None:
    text = (data_dir() / "wikitext-2-raw" / "wiki.valid.raw").read_text(encoding="utf-8").splitlines()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_bpe([t for t in text if t.strip()], 512),
                                        eos_token=EOS, bos_token=EOS, pad_token=EOS)
    eos = tokenizer.eos_token_id
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    tokenizer.save_pretrained(OUT)
    config.save_pretrained(OUT)
    print(f"wrote {OUT}: vocabulary {len(tokenizer)}, {config.num_hidden_layers} layers of width {config.hidden_size}")


if __name__ == "__main__":
    main()
