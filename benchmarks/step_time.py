"""Training-step time: HyProS against log-loss on the same model, and tokens/s per model rung.

    python benchmarks/step_time.py                               # nano, micro, tiny
    python benchmarks/step_time.py --rungs micro small --steps 20

One process, one model per rung, the real DeepSpeed engine (ZeRO-2, one rank) and real WikiText-2
batches. The two objectives alternate step by step (log, hypros, log, hypros, ...) so that drift in
the machine's speed hits both equally; the ratio is of the median step times. The study's criterion
C1 asks for a HyProS/log ratio ≤ 1.03.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from mdtable import print_table


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rungs", nargs="+", default=["nano", "micro", "tiny"])
    parser.add_argument("--steps", type=int, default=12, help="measured steps per objective (after 2 warm-up)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from hypros_lm.config import OptimSettings, TrainSettings
    from hypros_lm.data import BlockOrder, DataSettings, prepare_data
    from hypros_lm.models import MODEL_SIZES, ModelSettings, build_model
    from hypros_lm.training.engine import build_engine, init_distributed, load_ds_config

    init_distributed()
    data = prepare_data(DataSettings(seq_len=args.seq_len, vocab_size=args.vocab_size))
    train = TrainSettings(micro_batch_size=args.micro_batch_size, ds_config="zero2")
    optim = OptimSettings()
    order = BlockOrder(len(data.train), seed=0)
    tokens = args.micro_batch_size * args.seq_len
    table = []
    print(f"{'rung':>6} {'params':>8} {'log s/step':>11} {'hypros s/step':>14} {'hypros/log':>11} {'tok/s (hypros)':>15}")
    for rung in args.rungs:
        torch.manual_seed(0)
        model = build_model(ModelSettings(name=rung), data.tokenizer.get_vocab_size())
        params = model.num_parameters()
        engine = build_engine(model, load_ds_config(train, optim, 1, hidden_size=MODEL_SIZES[rung].hidden_size), optim)
        times: dict[str, list[float]] = {"log": [], "hypros": []}
        for i in range(2 * (args.steps + 2)):
            name = "log" if i % 2 == 0 else "hypros"
            lam = 0.0 if name == "log" else 0.3
            x, y = data.train.batch(order.indices(i * args.micro_batch_size, args.micro_batch_size))
            start = time.perf_counter()
            out = engine(x, y, lam, bounded="brier")
            engine.backward(out.loss)
            engine.step()
            if i >= 4:
                times[name].append(time.perf_counter() - start)
        t_log, t_hyp = statistics.median(times["log"]), statistics.median(times["hypros"])
        print(f"{rung:>6} {params / 1e6:>7.1f}M {t_log:>11.4f} {t_hyp:>14.4f} {t_hyp / t_log:>11.3f} "
              f"{tokens / t_hyp:>15.0f}", flush=True)
        table.append([rung, f"{params / 1e6:.1f}M", f"{t_log:.4f}", f"{t_hyp:.4f}", f"{t_hyp / t_log:.3f}",
                      f"{tokens / t_hyp:,.0f}"])
        del engine, model
    print_table(["rung", "parameters", "log s/step", "HyProS s/step", "HyProS / log (goal ≤ 1.03)", "tokens/s"], table)


if __name__ == "__main__":
    main(sys.argv[1:])
