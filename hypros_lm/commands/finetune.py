"""Fine-tune on a sequence-to-sequence task (translation, summarization) with a proper scoring rule,
scored on target tokens only. Same engine, settings, telemetry, checkpoints and --loss registry as
pretraining.

    deepspeed launch/finetune.py --config configs/finetune-multi30k.yaml --loss hypros --init-from runs/cpu-demo
    deepspeed --num_gpus 2 launch/finetune.py --task wmt14-en-de --init-from runs/base/hf --loss brier
    python eval/generate.py runs/ft-multi30k --split test --beams 4

Tasks: multi30k-en-de, wmt14-en-de, iwslt15-vi-en, cnn-dailymail, xsum (offline: the real copies in the data folder).
"""


from hypros_lm.cli import run_main
from hypros_lm.config import load_settings
from hypros_lm.errors import InvalidValue
from hypros_lm.settings_docs import settings_help
from hypros_lm.training import train


def main(argv: list[str]) -> None:
    if "-h" in argv or "--help" in argv:
        print(__doc__ + "\n" + settings_help())
        return
    settings = load_settings(argv)
    if settings.task.name is None:
        raise InvalidValue("launch/finetune.py needs a task: --task multi30k-en-de (or task.name in the config); "
                           "for language-model pretraining use launch/pretrain.py")
    train(settings)



def cli() -> None:
    """The console script's entry point."""
    run_main(main)


if __name__ == "__main__":
    cli()
