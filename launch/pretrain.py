"""Pretrain a decoder-only LM with a proper scoring rule.

A thin wrapper, so that `deepspeed launch/pretrain.py ...` works from a checkout: the command is
hypros_lm.commands.pretrain (installed: `hypros-pretrain`).
"""

from hypros_lm.commands.pretrain import cli

if __name__ == "__main__":
    cli()
