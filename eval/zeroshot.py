"""Zero-shot evaluation with lm-evaluation-harness (its own prompts and metrics) on a run or an HF folder.

A thin wrapper, so that `deepspeed eval/zeroshot.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.zeroshot (installed: `hypros-eval zeroshot`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("zeroshot")
