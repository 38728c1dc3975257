"""Load a training run's checkpoint without DeepSpeed's engine, and export it for Hugging Face.

ZeRO-1/2/3 checkpoints hold the fp32 weights in per-rank partitions; DeepSpeed's own
``get_fp32_state_dict_from_zero_checkpoint`` consolidates them. A ZeRO-0 checkpoint has the full
weights in its model-states file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tokenizers import Tokenizer

from hypros_lm.data import EOS, load_tokenizer
from hypros_lm.models import DecoderLM, llama_config, model_vocab_size
from hypros_lm.training.checkpoint import latest_checkpoint
from hypros_lm.training.settings import RunSettings, settings_from_dict


@dataclass
class LoadedRun:
    settings: RunSettings
    model: DecoderLM
    tokenizer: Tokenizer
    checkpoint: Path

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parent.parent  # <run>/checkpoints/step_N


def find_checkpoint(run_dir: Path, step: int | None = None) -> Path:
    ckpt_dir = run_dir / "checkpoints"
    if step is not None:
        folder = ckpt_dir / f"step_{step:07d}"
        if not (folder / "meta.json").is_file():
            have = sorted(p.name for p in ckpt_dir.glob("step_*") if (p / "meta.json").is_file())
            raise FileNotFoundError(f"no complete checkpoint for step {step} in {ckpt_dir}; complete ones: {have}")
        return folder
    folder = latest_checkpoint(ckpt_dir)
    if folder is None:
        raise FileNotFoundError(f"{run_dir} has no complete checkpoint (no {ckpt_dir / 'latest'}); is it a run folder?")
    return folder


def consolidated_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Full fp32 weights from a checkpoint folder of any ZeRO stage."""
    if any(folder.glob("*zero_pp_rank_*optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(folder.parent), tag=folder.name)
    else:
        files = sorted(folder.glob("mp_rank_*_model_states.pt"))
        if not files:
            raise FileNotFoundError(f"{folder} holds no DeepSpeed model states; the checkpoint is incomplete")
        state = torch.load(files[0], map_location="cpu", weights_only=False)["module"]
    return {k: v.float() for k, v in state.items()}


def load_run(run_dir: str | Path, *, step: int | None = None) -> LoadedRun:
    """The model of a run folder at its latest (or a given) checkpoint, on CPU, in eval mode."""
    run_dir = Path(run_dir)
    settings_file = run_dir / "settings.yaml"
    if not settings_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: no settings.yaml")
    settings = settings_from_dict(yaml.safe_load(settings_file.read_text()))
    tokenizer = load_tokenizer(str(run_dir / "tokenizer.json"))
    folder = find_checkpoint(run_dir, step)
    config = llama_config(settings.model, model_vocab_size(settings.model, tokenizer.get_vocab_size()), attn="sdpa")
    model = DecoderLM(config)
    state = consolidated_state_dict(folder)
    if settings.model.tie_embeddings and "head.weight" not in state:
        state["head.weight"] = state["body.embed_tokens.weight"]
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:4]
        raise ValueError(
            f"checkpoint {folder} does not match model {settings.model.name!r} from {settings_file} "
            f"(e.g. {diff}); it is from another model size or vocabulary"
        )
    model.load_state_dict(state)
    return LoadedRun(settings, model.eval(), tokenizer, folder)


def to_hf(loaded: LoadedRun):
    """The run's model as a transformers LlamaForCausalLM and a fast tokenizer (in memory)."""
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    config = loaded.model.config
    config.tie_word_embeddings = loaded.settings.model.tie_embeddings
    config.use_cache = True
    hf = LlamaForCausalLM(config)
    hf.model.load_state_dict(loaded.model.body.state_dict())
    with torch.no_grad():
        hf.lm_head.weight.copy_(loaded.model.head.weight)
    eos_id = loaded.tokenizer.token_to_id(EOS)
    hf.config.eos_token_id = hf.config.bos_token_id = eos_id
    hf.generation_config.eos_token_id = hf.generation_config.bos_token_id = eos_id
    fast = PreTrainedTokenizerFast(tokenizer_object=loaded.tokenizer, eos_token=EOS, bos_token=EOS, pad_token=EOS)
    return hf.eval(), fast


def export_hf(run_dir: str | Path, out_dir: str | Path, *, step: int | None = None) -> Path:
    """Write a Hugging Face folder (LlamaForCausalLM + fast tokenizer) that from_pretrained loads."""
    hf, fast = to_hf(load_run(run_dir, step=step))
    out_dir = Path(out_dir)
    hf.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir
