"""Export a run's DeepSpeed checkpoint (any ZeRO stage) to a Hugging Face folder.

A thin wrapper, so that `deepspeed eval/export.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.export (installed: `hypros-eval export`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("export")
