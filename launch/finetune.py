"""Fine-tune on a sequence-to-sequence task (translation, summarization) with a proper scoring rule,

A thin wrapper, so that `deepspeed launch/finetune.py ...` works from a checkout: the command is
hypros_lm.commands.finetune (installed: `hypros-finetune`).
"""

from hypros_lm.commands.finetune import cli

if __name__ == "__main__":
    cli()
