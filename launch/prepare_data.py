"""Prepare a corpus once, outside the training job: tokenizer + token shards + manifest.

A thin wrapper, so that `deepspeed launch/prepare_data.py ...` works from a checkout: the command is
hypros_lm.commands.prepare (installed: `hypros-prepare`).
"""

from hypros_lm.commands.prepare import cli

if __name__ == "__main__":
    cli()
