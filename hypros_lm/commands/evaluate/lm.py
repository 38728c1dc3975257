"""Evaluate a run's checkpoint (or an exported Hugging Face folder) on a data split.

    python eval/lm.py runs/cpu-demo                          # its validation split, latest checkpoint
    python eval/lm.py runs/cpu-demo --split test --batches 100 --out runs/cpu-demo/eval-test
    python eval/lm.py --hf-dir runs/cpu-demo/hf --data wikitext-2-v1 --split test

Writes metrics.json (perplexity, NLL, each registered score, accuracy, entropy, ECE with 10 and 15 bins,
adaptive ECE, MCE, the reliability table), reliability.png and entropy_hist.png.
"""

import argparse
from pathlib import Path

from hypros_lm.commands.evaluate.options import add_device_options, add_model_source, parse_model_source
from hypros_lm.data import load_tokenizer
from hypros_lm.evaluation.device import choose_device
from hypros_lm.evaluation.lm import evaluate_and_write
from hypros_lm.models import HFCausalLM
from hypros_lm.runs import EVALUATION_PREFIX, RunFolder, load_run
from hypros_lm.scoring.scores import score_keys


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_source(parser, run_help="a training run folder")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--data", help="data set (default: the run's)")
    parser.add_argument("--split", default="validation", help="the data set's split: validation or test")
    parser.add_argument("--seq-len", type=int, help="default: the run's")
    parser.add_argument("--batches", type=int, default=50,
                        help="batches of --batch-size sequences evaluated from the split's start (all of it if shorter)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences of --seq-len tokens per batch")
    add_device_options(parser)
    parser.add_argument("--out", help="output folder (default: <run>/eval-<split>)")
    args = parse_model_source(parser, argv)

    import torch

    if args.hf_dir:
        from transformers import AutoModelForCausalLM

        if args.data is None:
            parser.error("--data is required with --hf-dir")
        model = HFCausalLM(AutoModelForCausalLM.from_pretrained(args.hf_dir, dtype=torch.float32))
        tokenizer, data_name, seq_len, label = load_tokenizer(args.hf_dir), args.data, args.seq_len or 128, args.hf_dir
        run_precision = "fp32"
    else:
        run = load_run(args.run_dir, step=args.step)
        model, tokenizer = run.model, run.tokenizer
        data_name, seq_len = args.data or run.settings.data.name, args.seq_len or run.settings.data.seq_len
        label = f"{run.settings.loss.name} @ {run.checkpoint.name}"
        run_precision = run.settings.train.precision
    device, dtype = choose_device(args.device, run_precision=run_precision, precision=args.precision)
    model = model.to(device=device, dtype=dtype)
    out = Path(args.out or (RunFolder(args.run_dir).evaluation(args.split) if args.run_dir else
                            Path(args.hf_dir) / f"{EVALUATION_PREFIX}{args.split}"))
    result = evaluate_and_write(model, tokenizer, data=data_name, split=args.split, seq_len=seq_len,
                                batches=args.batches, batch_size=args.batch_size, out=out, label=label, device=device)
    print(f"{label} on {result['data']} ({result['val_tokens']:,} tokens):")
    print(f"  ppl {result['perplexity']:.2f} | NLL {result['loss_log']:.4f} | "
          + "".join(f"{k} {result['loss_' + k]:.4f} | " for k in score_keys(result))
          + f"acc {result['accuracy']:.4f} | entropy {result['entropy']:.3f}")
    print(f"  ECE(10) {result['ece_10']:.4f} | ECE(15) {result['ece_15']:.4f} | adaptive ECE(10) "
          f"{result['ece_adaptive_10']:.4f} | MCE(10) {result['mce_10']:.4f}")
    print(f"  wrote {out}/metrics.json, reliability.png, entropy_hist.png")
