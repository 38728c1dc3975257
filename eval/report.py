"""Write a study's Markdown report (criteria, tables, statistics, figures) from its run folders.

A thin wrapper, so that `deepspeed eval/report.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.report (installed: `hypros-eval report`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("report")
