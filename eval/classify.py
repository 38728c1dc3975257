"""Evaluate a fine-tuned classifier: accuracy, macro-F1, Brier, gold-label NLL, ECE (10/15 bins), reliability

A thin wrapper, so that `deepspeed eval/classify.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.classify (installed: `hypros-eval classify`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("classify")
