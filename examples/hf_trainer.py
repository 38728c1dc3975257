"""HyProS in a Hugging Face Trainer: a small Llama trained from scratch on real WikiText-2.

    python examples/hf_trainer.py                                   # one CPU process, seconds
    deepspeed --num_gpus 2 examples/hf_trainer.py --deepspeed examples/zero3.json

Two lines make a Trainer script a HyProS one: `patch_causal_lm(model)` (the fused score, no N×V logits)
and `add_hypros_callback(trainer, "hypros")` (λ from the step; λ and each score logged with the loss).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments, set_seed
from wikitext import wikitext_text

from hypros_lm.integrations.transformers import add_hypros_callback, patch_causal_lm


def token_blocks(text: str, *, vocab: int, seq_len: int) -> list[dict[str, torch.Tensor]]:
    """A byte-level BPE trained on the text, then the token stream cut into blocks (labels = inputs)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(text.splitlines(), trainers.BpeTrainer(vocab_size=vocab, show_progress=False))
    ids = torch.tensor(tok.encode(text).ids)
    blocks = ids[: len(ids) // seq_len * seq_len].view(-1, seq_len)
    return [{"input_ids": b, "labels": b} for b in blocks]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--loss", default="hypros", help="objective, as the stack's --loss: hypros, log, brier, hypros-linear, ...")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--chars", type=int, default=2_000_000, help="characters of the training split to use")
    p.add_argument("--out", default="runs/example-hf-trainer")
    p.add_argument("--deepspeed", default=None, help="a DeepSpeed config (e.g. examples/zero3.json)")
    p.add_argument("--local_rank", type=int, default=-1)  # set by the deepspeed launcher
    args = p.parse_args()

    data = token_blocks(wikitext_text("train", args.chars), vocab=args.vocab, seq_len=args.seq_len)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=args.seq_len)
    # The model is built before TrainingArguments: with a ZeRO-3 config, arguments made first would build it
    # under deepspeed.zero.Init (partitioned as it is created, as a large model needs), whose random
    # initialisation differs from a whole model's; this small one is built whole, the same for every stage.
    set_seed(0)  # the same initial weights on every rank and in every run
    model = patch_causal_lm(LlamaForCausalLM(config))
    training = TrainingArguments(
        output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=8, learning_rate=3e-3,
        warmup_steps=args.steps // 10, logging_steps=max(1, args.steps // 10), save_strategy="no", report_to=[],
        deepspeed=args.deepspeed, use_cpu=not torch.cuda.is_available(), seed=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training, train_dataset=data)
    add_hypros_callback(trainer, args.loss)
    trainer.train()
    if trainer.is_world_process_zero():  # the log as the Trainer kept it (loss averaged over ranks)
        Path(args.out, "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    last = [r for r in trainer.state.log_history if "loss" in r][-1]
    print(f"done: step {last['step']} loss {last['loss']:.4f} λ {last['hypros/lambda']:.3f} "
          f"log {last['hypros/log']:.3f} brier {last['hypros/brier']:.4f}")


if __name__ == "__main__":
    main()
