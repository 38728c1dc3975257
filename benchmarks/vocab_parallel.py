"""The vocab-parallel fused head on 2 ranks against the whole head on 1, at the same shape: time per forward + backward
and peak memory per rank, side by side in one run.

    python benchmarks/vocab_parallel.py                                  # 8192 tokens × 256 × 32768, HyProS, fp32, CPU
    python benchmarks/vocab_parallel.py --shape 16384x512x50304 --repeats 5 --lam 0.3

Each configuration is a fresh set of processes (gloo on CPU, NCCL on GPUs; one thread a rank on CPU, so 2 ranks use
2 cores where 1 rank uses 1): every rank builds the same seeded inputs (benchmarks/scoring.py's), keeps its
contiguous block of the head's rows (``fused_linear_score(..., process_group=)``), runs one warm-up step, then
``--repeats`` timed steps. The configurations alternate (1, 2, 1, 2, ...) so that drift hits both; medians are
reported. "peak over start" is a rank's resident-memory high-water mark during the steps minus its resident memory
before them (on a GPU, its peak allocation over the start): the step's working memory, the ∂W block included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mdtable import print_table
from scoring import _inputs, _peak_mb, start_peak

from hypros_lm.scoring import fused_linear_score


def _rank(rank: int, world: int, shape: tuple[int, int, int], lam: float, repeats: int, port: int, out) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world)
    n, d, v = shape
    h, w, t, device = _inputs(n, d, v)
    rows = -(-v // world)
    block = w.detach()[rank * rows:(rank + 1) * rows].clone().requires_grad_()
    group = dist.group.WORLD if world > 1 else None

    def step():
        fused_linear_score(h, block, t, lam=lam, process_group=group).loss.backward()
        h.grad = block.grad = None
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    base = start_peak(device)
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    out.put((rank, statistics.median(times), _peak_mb() - base, block.shape[0]))
    dist.destroy_process_group()


def measure(world: int, shape: tuple[int, int, int], *, lam: float, repeats: int, port: int) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, world, shape, lam, repeats, port, out)) for r in range(world)]
    for p in procs:
        p.start()
    results = sorted(out.get() for _ in procs)
    for p in procs:
        p.join()
    return {"seconds": max(r[1] for r in results), "peak_mib": max(r[2] for r in results),
            "rows": [r[3] for r in results]}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="8192x256x32768", help="tokens x hidden x vocabulary")
    parser.add_argument("--lam", type=float, default=0.3, help="HyProS's λ (0.3: log-loss and Brier both present)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps a configuration")
    parser.add_argument("--rounds", type=int, default=3, help="fresh process sets a configuration, alternated")
    args = parser.parse_args(argv)
    shape = tuple(map(int, args.shape.split("x")))
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for r in range(args.rounds):
        for world in (1, 2):
            runs[world].append(measure(world, shape, lam=args.lam, repeats=args.repeats, port=29640 + 2 * r + world))
            print(f"  round {r + 1}/{args.rounds}, {world} rank(s): {runs[world][-1]}", file=sys.stderr)
    med = {w: {k: statistics.median(x[k] for x in rs) for k in ("seconds", "peak_mib")} for w, rs in runs.items()}
    n, d, v = shape
    device = "CUDA, bf16" if torch.cuda.is_available() else "CPU, fp32, one thread a rank"
    print(f"# benchmarks/vocab_parallel.py: the fused HyProS head (λ = {args.lam}), {n} tokens × {d} × vocabulary {v}, "
          f"{device}, torch {torch.__version__}; medians of {args.rounds} fresh process sets × {args.repeats} steps")
    print_table(["ranks", "rows a rank", "s/step (slowest rank)", "peak over start a rank (MiB)"],
                [[str(w), "/".join(map(str, runs[w][0]["rows"])), f"{med[w]['seconds']:.3f}",
                  f"{med[w]['peak_mib']:.0f}"] for w in (1, 2)])
    print(f"\n2 ranks / 1 rank: time {med[2]['seconds'] / med[1]['seconds']:.2f}×, "
          f"peak memory a rank {med[2]['peak_mib'] / med[1]['peak_mib']:.2f}×")


if __name__ == "__main__":
    main(sys.argv[1:])
