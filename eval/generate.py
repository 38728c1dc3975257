"""Generate with a fine-tuned run and score it: sacreBLEU BLEU/chrF (translation) or ROUGE (summarization),

A thin wrapper, so that `deepspeed eval/generate.py ...` works from a checkout: the command is
hypros_lm.commands.evaluate.generate (installed: `hypros-eval generate`).
"""

from hypros_lm.commands.evaluate import cli

if __name__ == "__main__":
    cli("generate")
