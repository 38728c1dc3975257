"""Pretrain a decoder-only LM with a proper scoring rule.

    deepspeed launch/pretrain.py --loss hypros                 # all local devices (CPU: one rank)
    deepspeed --num_gpus 2 launch/pretrain.py --loss brier --ds-config zero3
    python launch/pretrain.py --config configs/cpu-demo.yaml --max-steps 100

Settings: --config FILE.yaml, then --section.key value overrides (listed below, with types, defaults and descriptions).
"""


from hypros_lm.cli import run_main
from hypros_lm.config import load_settings
from hypros_lm.settings_docs import settings_help
from hypros_lm.training import train


def main(argv: list[str]) -> None:
    if "-h" in argv or "--help" in argv:
        print(__doc__ + "\n" + settings_help())
        return
    train(load_settings(argv))



def cli() -> None:
    """The console script's entry point."""
    run_main(main)


if __name__ == "__main__":
    cli()
