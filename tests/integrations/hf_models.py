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
    moe = dict(num_experts_per_tok=2, output_router_logits=True, router_aux_loss_coef=0.02)
    configs = {
        "llama": lambda: tf.LlamaConfig(**llama_like),
        "mistral": lambda: tf.MistralConfig(**llama_like, sliding_window=None),
        "qwen2": lambda: tf.Qwen2Config(**llama_like),
        "qwen3": lambda: tf.Qwen3Config(**llama_like, head_dim=8),
        "gemma2": lambda: tf.Gemma2Config(**llama_like, head_dim=8, final_logit_softcapping=5.0, sliding_window=16),
        "gemma3_text": lambda: tf.Gemma3TextConfig(**llama_like, head_dim=8, final_logit_softcapping=4.0,
                                                   sliding_window=16),
        "phi3": lambda: tf.Phi3Config(**llama_like, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0),
        "olmo2": lambda: tf.Olmo2Config(**llama_like),
        "granite": lambda: tf.GraniteConfig(**llama_like, logits_scaling=4.0, embedding_multiplier=2.0,
                                            residual_multiplier=0.5, attention_multiplier=0.25),
        "cohere": lambda: tf.CohereConfig(**llama_like, logit_scale=0.5),
        "mixtral": lambda: tf.MixtralConfig(**llama_like, num_local_experts=4, **moe),
        "qwen3_moe": lambda: tf.Qwen3MoeConfig(**{**llama_like, "intermediate_size": 64}, head_dim=8, num_experts=4,
                                               moe_intermediate_size=32, decoder_sparse_step=1, **moe),
        "llama4_text": lambda: tf.Llama4TextConfig(**{**llama_like, "intermediate_size": 32}, intermediate_size_mlp=64,
                                                   head_dim=8, num_local_experts=2, interleave_moe_layer_step=2,
                                                   attention_chunk_size=16),
        "recurrent_gemma": lambda: tf.RecurrentGemmaConfig(**{k: v for k, v in llama_like.items() if k != "max_position_embeddings"},
                                                           head_dim=8, lru_width=32, attention_window_size=16,
                                                           block_types=["recurrent", "attention"], logits_soft_cap=5.0),
        "deepseek_v3": lambda: tf.DeepseekV3Config(**{**llama_like, "num_key_value_heads": 4}, moe_intermediate_size=16,
                                                   n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=1,
                                                   q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
                                                   v_head_dim=8, n_group=2, topk_group=1, output_router_logits=True),
        "opt": lambda: tf.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                                    word_embed_proj_dim=32, max_position_embeddings=128, dropout=0.0, **common),
        "gpt2": lambda: tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0, **common),
        "gpt_neox": lambda: tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, max_position_embeddings=128, **common),
    }
    return configs[model_type]()


ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "olmo2", "granite", "cohere",
                 "mixtral", "qwen3_moe", "llama4_text", "recurrent_gemma", "deepseek_v3", "opt", "gpt2", "gpt_neox")
"""The architectures the integration is tested on, each built from transformers' own classes."""

COVERAGE: dict[str, tuple[str, ...]] = {
    "plain loop": ARCHITECTURES,  # test_hf_patch: λ = 0 = own loss and gradients; Brier, spherical, HyProS = float64
    "stack (hf:)": ARCHITECTURES,  # models/test_hf_architectures: built by the stack, probed, its own λ = 0 loss
    "Trainer": ("llama", "qwen3", "gpt2"),  # test_hf_trainer: accumulation 4 × 2 = 1 × 8, λ and components logged
    "TRL SFT": ("qwen2", "gemma3_text", "phi3"),  # test_trl: λ = 0 = TRL's own loss, entropy and accuracy
    "PEFT": ("llama", "qwen3_moe"),  # test_peft: LoRA either order = float64 reference, adapter gradients
    # models/test_hf_stack: the stack under ZeRO-3 = ZeRO-0 (llama: the stage runs, training/test_launcher)
    "ZeRO-3": ("llama", "gpt2", "gpt_neox", "qwen2"),
    "FSDP2": ("llama",),  # test_fsdp_compile: fully_shard on 2 ranks = one process
    "torch.compile": ("qwen2", "gemma2"),  # test_fsdp_compile: compiled = eager, ignored rows present
    "Axolotl": ("llama",),  # test_axolotl: axolotl.cli.train; λ = 1 = the independent Brier, LoRA trains the adapter only
    # test_torchtitan: torchtitan's own Llama-3 (its debug model), the loss built by its config system = the fused head
    # and a float64 reference; the head sharded by its TP plan on 2 ranks = the whole head
    "torchtitan": ("llama",),
}
"""Which architectures each integration's tests run on: the tests take their parameters from here, and the README's
compatibility table is rendered from it (tests/integrations/test_compatibility.py)."""


def build(model_type: str, *, seed: int = 0, dtype=torch.float32, **kw):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(small_config(model_type, **kw), attn_implementation="eager",
                                             experts_implementation="eager")  # MoE: float64 has no grouped matmul
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
