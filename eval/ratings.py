"""Unblind and report side-by-side ratings saved from eval/compare.py's page.

A thin wrapper, so that `deepspeed eval/ratings.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.ratings (installed: `hypros-eval ratings`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("ratings")
