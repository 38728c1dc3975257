"""`hypros-eval SUBCOMMAND ...`: the evaluation tools (each also `python eval/SUBCOMMAND.py` in a checkout)."""

from __future__ import annotations

import importlib
import sys

from hypros_lm.cli import run_main
from hypros_lm.errors import InvalidValue

SUBCOMMANDS = {
    "lm": "perplexity, every registered score, calibration of a run or Hugging Face model on a corpus",
    "zeroshot": "lm-eval zero-shot tasks (offline copies where there are)",
    "export": "a run folder as a Hugging Face folder",
    "generate": "a sequence-to-sequence run: generation, BLEU/chrF or ROUGE, perturbations",
    "classify": "a classification run: class metrics, predictions, perturbations, domain shift",
    "compare": "a blinded side-by-side rating page of two runs",
    "ratings": "the analysis of collected ratings",
    "plots": "learning curves, λ and gradient norms of run folders",
    "report": "a study's report from its run folders",
}


def usage() -> str:
    lines = ["usage: hypros-eval SUBCOMMAND [ARGS] (hypros-eval SUBCOMMAND --help for its arguments)", ""]
    return "\n".join(lines + [f"  {name:<10} {what}" for name, what in SUBCOMMANDS.items()])


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] not in SUBCOMMANDS:
        raise InvalidValue(f"unknown hypros-eval subcommand {argv[0]!r}; choose one of {list(SUBCOMMANDS)}")
    importlib.import_module(f"hypros_lm.commands.evaluate.{argv[0]}").main(argv[1:])


def cli(subcommand: str | None = None) -> None:
    """The console script's entry point (``hypros-eval``), or one subcommand's (``eval/<subcommand>.py``)."""
    run_main(main, sys.argv[1:] if subcommand is None else [subcommand, *sys.argv[1:]])


if __name__ == "__main__":
    cli()
