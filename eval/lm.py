"""Evaluate a run's checkpoint (or an exported Hugging Face folder) on a data split.

A thin wrapper, so that `deepspeed eval/lm.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.lm (installed: `hypros-eval lm`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("lm")
