"""Run a study's matrix here, one run after another (skipping finished runs, resuming interrupted

A thin wrapper, so that `deepspeed launch/study.py ...` works from a checkout: the command is
hypros_lm.commands.study (installed: `hypros-study`).
"""

from hypros_lm.commands.study import cli

if __name__ == "__main__":
    cli()
