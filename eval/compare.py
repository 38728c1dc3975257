"""A blinded side-by-side comparison page of two runs, for human raters.

A thin wrapper, so that `deepspeed eval/compare.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.compare (installed: `hypros-eval compare`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("compare")
