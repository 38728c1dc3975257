"""HyProS in TRL's SFTTrainer: a small Qwen2 fine-tuned on real Multi30k English → German pairs, loss on the
German completion only (TRL's prompt-completion format), with a LoRA adapter when --lora is given.

    python examples/trl_sft.py                 # one CPU process, seconds
    python examples/trl_sft.py --lora          # PEFT: only the adapter trains

`HyProSSFTTrainer` is TRL's SFTTrainer with the fused objective: it patches the model, drives λ from the step and
takes the logged entropy and token accuracy from the fused pass. A plain SFTTrainer would train −log p through its
own head; the callback stops such a run at its first step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, set_seed
from trl import SFTConfig
from wikitext import data_folder

from hypros_lm.integrations.trl import HyProSSFTTrainer

EOS = "<|endoftext|>"


def pairs(split: str, n: int) -> Dataset:
    folder = data_folder("multi30k")
    english, german = ((folder / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:n] for lang in ("en", "de"))
    return Dataset.from_dict({"prompt": [e + " =" for e in english], "completion": [" " + g for g in german]})


def bpe(texts: list[str], vocab: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOS], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--loss", default="hypros", help="objective, as the stack's --loss: hypros, log, brier, hypros-linear, ...")
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft) instead of the whole model")
    p.add_argument("--out", default="runs/example-trl-sft")
    args = p.parse_args()

    train = pairs("train", args.pairs)
    tokenizer = bpe(list(train["prompt"]) + list(train["completion"]), 2048)
    set_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=176,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128, eos_token_id=0, pad_token_id=0))
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    config = SFTConfig(output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=16, learning_rate=3e-3,
                       logging_steps=max(1, args.steps // 10), save_strategy="no", report_to=[], max_length=96,
                       use_cpu=True, bf16=False, seed=0, disable_tqdm=True)
    trainer = HyProSSFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer,
                               peft_config=peft_config, loss=args.loss)
    trainer.train()
    Path(args.out, "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    last = [r for r in trainer.state.log_history if "loss" in r][-1]
    print(f"done: step {last['step']} loss {last['loss']:.4f} λ {last['hypros/lambda']:.3f} log {last['hypros/log']:.3f} "
          f"brier {last['hypros/brier']:.4f} token accuracy {last['mean_token_accuracy']:.3f}")


if __name__ == "__main__":
    main()
