"""Arguments the evaluation tools share: where the model runs, and which split of which task."""

from __future__ import annotations

import argparse


def add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", help="auto (the run's, on CUDA), fp32 or bf16")


def add_task_options(parser: argparse.ArgumentParser, *, split: str, task_help: str, limit_help: str) -> None:
    """A fine-tuned run folder, the task and split to evaluate it on, and how many examples."""
    parser.add_argument("run_dir", help="a fine-tuned run folder")
    parser.add_argument("--task", help=task_help)
    parser.add_argument("--split", default=split, help="the task's split")
    parser.add_argument("--limit", type=int, help=limit_help)


def add_model_source(parser: argparse.ArgumentParser, *, run_help: str) -> None:
    """A training run folder, or an exported Hugging Face folder (exactly one: see parse_model_source)."""
    parser.add_argument("run_dir", nargs="?", help=run_help)
    parser.add_argument("--hf-dir", help="an exported Hugging Face folder instead of a run")


def parse_model_source(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if bool(args.run_dir) == bool(args.hf_dir):
        parser.error("give a run folder or --hf-dir, not both")
    return args
