"""Export a run's DeepSpeed checkpoint (any ZeRO stage) to a Hugging Face folder.

    python eval/export.py runs/cpu-demo runs/cpu-demo/hf [--step 400]
"""

import argparse

from hypros_lm.runs import export_hf


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a training run folder")
    parser.add_argument("out_dir", help="the Hugging Face folder to write (config, weights, tokenizer)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    args = parser.parse_args(argv)

    out = export_hf(args.run_dir, args.out_dir, step=args.step)
    print(f"exported {args.run_dir} -> {out} (load with AutoModelForCausalLM.from_pretrained)")
