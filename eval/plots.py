"""Figures from run folders: learning curves (steps and wall-clock), λ and gradient norms, and the

A thin wrapper, so that `deepspeed eval/plots.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.plots (installed: `hypros-eval plots`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("plots")
