"""Hugging Face architectures in the training stack (`--model hf:<folder>`), measured with the real launcher.

    python benchmarks/hf_models.py > docs/benchmarks/hf-models-cpu.txt

For each architecture (Llama, GPT-2 with tied embeddings, GPT-NeoX, Qwen2; 4 layers of width 128 at the
8,192-token BPE of WikiText-2): the same HyProS run under ZeRO-0 and ZeRO-3 on 2 CPU ranks (DeepSpeed's
launcher), its final training and validation losses and seconds per step. Then the ladder's `micro` rung
against its config given as `hf:` (one process), and a pretrained start: a log-loss `micro` run exported to a
Hugging Face folder, continued as `--model hf:<folder>`, whose step-0 validation loss is compared with what
`eval/lm.py --hf-dir` reports for the folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mdtable import print_table

REPO = Path(__file__).resolve().parents[1]
STEPS = 20
COMMON = ["--data", "wikitext-2-v1", "--seq-len", "128", "--micro-batch-size", "8", "--data.vocab_size", "8192",
          "--max-steps", str(STEPS), "--train.log_every", "5", "--train.eval_every", str(STEPS),
          "--train.eval_batches", "4", "--telemetry.wandb", "disabled", "--optim.warmup_steps", "5"]


def _configs(root: Path) -> dict[str, Path]:
    import transformers as tf

    shape = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                 max_position_embeddings=512, vocab_size=8192, bos_token_id=0, eos_token_id=0)
    configs = {
        "llama": tf.LlamaConfig(**shape, num_key_value_heads=4),
        "gpt2 (tied)": tf.GPT2Config(n_embd=128, n_layer=4, n_head=4, n_positions=512, vocab_size=8192, bos_token_id=0,
                                     eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
        "gpt_neox": tf.GPTNeoXConfig(**shape, tie_word_embeddings=False),
        "qwen2": tf.Qwen2Config(**shape, num_key_value_heads=2, tie_word_embeddings=False),
    }
    folders = {}
    for name, config in configs.items():
        folders[name] = root / name.split()[0]
        config.save_pretrained(folders[name])
    return folders


def _run(args: list[str], *, ranks: int, script: str = "launch/pretrain.py") -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if ranks > 1:
        cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", str(ranks), script, *args]
    else:
        cmd = [sys.executable, script, *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _records(out: Path, split: str) -> list[dict]:
    from hypros_lm.runs import RunFolder

    return RunFolder(out).metrics(split)


def _summary(out: Path) -> tuple[float, float, float, int]:
    train, val = _records(out, "train"), _records(out, "val")
    s_per_step = (train[-1]["elapsed_s"] - train[0]["elapsed_s"]) / (train[-1]["step"] - train[0]["step"])
    from hypros_lm.runs import RunFolder

    params = RunFolder(out).environment()["num_parameters"]
    return train[-1]["loss"], val[-1]["loss_log"], s_per_step, params


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="hf_models_"))
    rows = []
    for name, folder in _configs(root).items():
        results = {}
        for stage in ("zero0", "zero3"):
            out = root / f"{folder.name}-{stage}"
            _run([*COMMON, "--loss", "hypros", "--model", f"hf:{folder}", "--ds-config", stage, "--out", str(out)],
                 ranks=2)
            results[stage] = _summary(out)
        (l0, _, s0, params), (l3, v3, s3, _) = results["zero0"], results["zero3"]
        rows.append([name, f"{params / 1e6:.2f}M", f"{l0:.4f}", f"{l3:.4f}", f"{abs(l3 - l0):.1e}", f"{v3:.4f}",
                     f"{s0:.3f}", f"{s3:.3f}"])
    print(f"HyProS, {STEPS} steps of 2 ranks × 8 × 128 tokens on WikiText-2, deepspeed --num_gpus 2 (CPU); "
          f"val: validation log-loss at step {STEPS}")
    print_table(["architecture", "parameters", "loss ZeRO-0", "loss ZeRO-3", "abs. difference", "val log-loss",
                 "s/step ZeRO-0", "s/step ZeRO-3"], rows)

    from hypros_lm.models import ModelSettings, llama_config
    from hypros_lm.runs import EVALUATION_FILE

    rung = root / "micro-as-hf"
    llama_config(ModelSettings(name="micro"), 8192).save_pretrained(rung)
    ladder_out, hf_out = root / "ladder", root / "ladder-hf"
    _run([*COMMON, "--loss", "hypros", "--model", "micro", "--out", str(ladder_out)], ranks=1)
    _run([*COMMON, "--loss", "hypros", "--model", f"hf:{rung}", "--out", str(hf_out)], ranks=1)
    ladder, hf = (_records(o, "train")[-1]["loss"] for o in (ladder_out, hf_out))

    demo = root / "demo"
    _run([*COMMON, "--loss", "log", "--model", "micro", "--max-steps", "100", "--train.eval_every", "100",
          "--out", str(demo)], ranks=1)
    _run([str(demo), str(demo / "hf")], ranks=1, script="eval/export.py")
    _run(["--hf-dir", str(demo / "hf"), "--data", "wikitext-2-v1", "--seq-len", "128", "--batches", "4",
          "--batch-size", "8", "--out", str(root / "eval")], ranks=1, script="eval/lm.py")
    reported = json.loads((root / "eval" / EVALUATION_FILE).read_text())["loss_log"]
    cont = root / "continued"
    _run([*COMMON, "--loss", "hypros", "--model", f"hf:{demo / 'hf'}", "--train.eval_at_start", "true",
          "--optim.lr", "3e-4", "--out", str(cont)], ranks=1)
    start, end = _records(cont, "val")[0], _records(cont, "val")[-1]
    print()
    print_table(["check", "value", "against", "abs. difference"], [
        ["ladder `micro` vs `hf:` its Llama config: loss at step 20", f"{hf:.6f}", f"{ladder:.6f}",
         f"{abs(hf - ladder):.1e}"],
        ["exported log-loss `micro` (100 steps) as `hf:`: validation log-loss at step 0 vs `eval/lm.py --hf-dir`",
         f"{start['loss_log']:.6f}", f"{reported:.6f}", f"{abs(start['loss_log'] - reported):.1e}"],
        [f"the same, continued {STEPS} steps with HyProS at lr 3e-4: validation log-loss", f"{end['loss_log']:.4f}",
         f"{start['loss_log']:.4f}", ""],
    ])


if __name__ == "__main__":
    main()
