"""`python -m hypros_lm.commands.evaluate SUBCOMMAND ...`, the same as `hypros-eval`."""

from hypros_lm.commands.evaluate import cli

cli()
