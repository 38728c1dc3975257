"""Small randomly initialised configs of the covered architectures, and real WikiText-2 batches for them."""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import torch

from hypros_lm.data.sources import data_dir

VOCAB = 512


def small_config(model_type: str, *, vocab: int = VOCAB, tie: bool = False):
    import transformers as tf

    common = dict(vocab_size=vocab, tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    llama_like = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, **common)
    configs = {
        "llama": lambda: tf.LlamaConfig(**llama_like),
        "mistral": lambda: tf.MistralConfig(**llama_like, sliding_window=None),
        "qwen2": lambda: tf.Qwen2Config(**llama_like),
        "gemma2": lambda: tf.Gemma2Config(**llama_like, head_dim=8, final_logit_softcapping=5.0, sliding_window=16),
        "gpt2": lambda: tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0, **common),
        "gpt_neox": lambda: tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, max_position_embeddings=128, **common),
    }
    return configs[model_type]()


def build(model_type: str, *, seed: int = 0, dtype=torch.float32, **kw):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(small_config(model_type, **kw), attn_implementation="eager")
    return model.to(dtype)


def wikitext_lines(split: str = "valid") -> list[str]:
    """Non-empty lines of the real WikiText-2 (v1) split from the offline data folder."""
    folder = data_dir() / "wikitext-2"
    path = next(p for p in (folder / f"wiki.{split}.tokens", folder / f"wiki.{split}.tokens.gz") if p.exists())
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.strip() for line in f if len(line.strip()) > 40 and not line.startswith(" =")]


@lru_cache(maxsize=2)
def tokenizer(vocab: int = VOCAB):
    from hypros_lm.data.tokenizer import train_bpe

    return train_bpe(wikitext_lines("valid")[:3000], vocab)


def padded_batch(start: int, n: int, *, max_len: int = 40, vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    """n real lines of unequal lengths, right-padded; labels −100 on padding."""
    tok = tokenizer(vocab)
    rows = [tok.encode(line).ids[: max_len - (i % 3) * 7] for i, line in enumerate(wikitext_lines()[start : start + n])]
    width = max(map(len, rows))
    ids = torch.zeros(n, width, dtype=torch.long)
    labels = torch.full((n, width), -100)
    mask = torch.zeros(n, width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        labels[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


REPO = Path(__file__).resolve().parents[2]
