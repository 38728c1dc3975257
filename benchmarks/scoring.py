"""The fused scoring head against the three-matmul floor and the anchors (time), then its memory.

    python benchmarks/scoring.py                       # both parts: docs/benchmarks/scoring-cpu.txt
    python benchmarks/scoring.py --against-floor       # the timing only, at issue #29's three shapes
    python benchmarks/scoring.py --memory --shapes 4096x256x32768 --repeats 3
    python benchmarks/scoring.py --against-floor --repeats 2 --floor-impls fused-log fused-brier fused-hypros \
        fused-power-3 fused-spherical fused-pseudo-spherical-3      # the score families: docs/benchmarks/scoring-families-cpu.txt

The timing (``--against-floor``) runs, in one process per shape and interleaved (each round runs every
implementation once; the best of ``--repeats`` rounds is kept), the three-matmul floor (the logits, ∂h and ∂W of the
fused head's own token chunks computed alone, into buffers allocated once), PyTorch's chunked
``F.linear_cross_entropy``, TRL's chunked log-prob head (when TRL imports), materialised ``F.cross_entropy`` and the
fused log, Brier and HyProS (λ = 0.3) and the score families' order-3 members beside their order-2 ones (power
beside Brier, pseudo-spherical beside spherical), and reports each as a ratio to the floor measured beside it: the ratio depends
on the machine, the floor is what the work around the matmuls is judged by. bf16 on CUDA, fp32 on CPU.

The memory part (``--memory``) runs each (implementation, shape) in a fresh process: its peak resident memory minus
the memory held once the inputs exist is the extra memory the implementation needed (CPU has no allocator statistics;
on CUDA the allocator's peak is used instead), with the median time of --repeats runs after one warm-up:

    naive          materialised logits, softmax, one-hot; HyProS (λ=0.3, Brier) by autograd
    F.cross_entropy  materialised logits + torch's fused cross-entropy (log-loss only)
    fused-log      fused_linear_score, λ = 0
    fused-brier    fused_linear_score, λ = 1
    fused-hypros   fused_linear_score, λ = 0.3 (the product path: gradients computed in forward)
    fused-hypros-recompute  same, gradients recomputed in backward (the alternative design)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

IMPLS = ["naive", "F.cross_entropy", "fused-log", "fused-brier", "fused-hypros", "fused-hypros-recompute"]
DEFAULT_SHAPES = ["2048x256x8192", "8192x256x32768", "16384x256x50304"]
FLOOR_SHAPES = ["8192x256x32768", "16384x256x50304", "4096x1024x50304"]  # the shapes issue #29 measured


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> None:
    """Restart the peak resident size from the current one (Linux): a spawned process starts with its parent's peak,
    which ``getrusage``'s ``ru_maxrss`` would report."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def start_peak(device: str) -> float:
    """Restart the peak-memory mark (the GPU's allocations, else the process's resident size) and return the memory
    in use now (MiB): ``_peak_mb()`` minus it is what the work since takes."""
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    _reset_peak()
    return _rss_mb()


def _inputs(n: int, d: int, v: int):
    """Hidden states, head weight and targets (every 50th ignored), bf16 on CUDA and fp32 on CPU, seeded."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    h = (torch.randn(n, d, device=device) * 0.5).to(dtype).requires_grad_()
    w = (torch.randn(v, d, device=device) * 0.05).to(dtype).requires_grad_()
    t = torch.randint(0, v, (n,), device=device)
    t[::50] = -100
    return h, w, t, device


def _measure(impl: str, n: int, d: int, v: int, repeats: int, queue) -> None:
    import torch
    import torch.nn.functional as F

    from hypros_lm.scoring import fused_linear_score, naive_linear_score

    h, w, t, device = _inputs(n, d, v)

    def step():
        if impl == "naive":
            loss = naive_linear_score(h, w, t, 0.3, "brier")["loss"]
        elif impl == "F.cross_entropy":
            loss = F.cross_entropy((h @ w.T).float(), t, ignore_index=-100)
        else:
            loss = fused_linear_score(h, w, t, **FUSED[impl]).loss
        loss.backward()
        h.grad = w.grad = None
        if device == "cuda":
            torch.cuda.synchronize()

    base = start_peak(device)
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    queue.put({"time_s": statistics.median(times), "extra_mem_mb": max(0.0, _peak_mb() - base)})


def measure(impl: str, shape: str, repeats: int) -> dict:
    n, d, v = map(int, shape.split("x"))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(impl, n, d, v, repeats, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:  # -9: the kernel's out-of-memory killer
        return {"time_s": float("nan"), "extra_mem_mb": float("nan"), "killed": proc.exitcode == -9,
                "error": f"exit {proc.exitcode}"}
    return queue.get()


def _memory_mb() -> float:
    """The machine's memory (MiB): what a process killed for memory needed more than."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20


FUSED: dict[str, dict] = {
    "fused-log": {"lam": 0.0}, "fused-brier": {"lam": 1.0}, "fused-hypros": {"lam": 0.3},
    "fused-hypros-recompute": {"lam": 0.3, "grad_in_forward": False},
    "fused-power-3": {"lam": 1.0, "bounded": "power", "alpha": 3},
    "fused-spherical": {"lam": 1.0, "bounded": "spherical"},
    "fused-pseudo-spherical-3": {"lam": 1.0, "bounded": "pseudo-spherical", "alpha": 3},
}
"""fused_linear_score's keywords for each fused implementation the benchmarks name (Brier where none is named)."""

FLOOR_IMPLS = ["floor", "F.linear_cross_entropy", "trl-chunked-logprob", "liger-flce", "F.cross_entropy", "fused-log",
               "fused-brier", "fused-hypros", "fused-power-3", "fused-spherical", "fused-pseudo-spherical-3"]
FAMILY_RATIOS = (("fused-power-3", "fused-brier"), ("fused-pseudo-spherical-3", "fused-spherical"))
"""(a family member of order 3, its α = 2 member): what another order costs (goal ≤ 1.15)."""


def _floor_steps(n: int, d: int, v: int):
    """name -> a forward + backward step, on the same inputs (bf16 on CUDA, fp32 on CPU)."""
    import torch
    import torch.nn.functional as F

    from hypros_lm.scoring import default_chunk_size, fused_linear_score

    h, w, t, device = _inputs(n, d, v)
    chunk = default_chunk_size(v)

    def floor():
        """The three matmuls of the fused head's own token chunks, into buffers allocated once (as the head's are)."""
        with torch.no_grad():
            grad_w = torch.zeros(v, d, device=device, dtype=h.dtype)
            z_buf = torch.empty(min(chunk, n) * v, device=device, dtype=h.dtype)
            gh_buf = torch.empty(min(chunk, n), d, device=device, dtype=h.dtype)
            for s in range(0, n, chunk):
                h_c = h[s : s + chunk]
                z = torch.mm(h_c, w.T, out=z_buf[: len(h_c) * v].view(len(h_c), v))  # the logits (stand-in for G)
                torch.mm(z, w, out=gh_buf[: len(h_c)])  # ∂h
                grad_w.addmm_(z.T, h_c)  # ∂W

    def backward(loss):
        loss.backward()
        h.grad = w.grad = None

    def trl_head():
        from trl.kernels import ChunkedLogProbFunction

        valid = t != -100
        log_probs = ChunkedLogProbFunction.apply(h[valid], w, None, t[valid], 1.0, 32768, None, 1.0, ("log_probs",))[0]
        backward(-log_probs.sum() / valid.sum())

    steps = {
        "floor": floor,
        "F.linear_cross_entropy": lambda: backward(F.linear_cross_entropy(h, w, t, ignore_index=-100)),
        "F.cross_entropy": lambda: backward(F.cross_entropy((h @ w.T).float(), t, ignore_index=-100)),
        **{name: (lambda kw=kw: backward(fused_linear_score(h, w, t, **kw).loss)) for name, kw in FUSED.items()},
    }
    try:
        import trl.kernels  # noqa: F401

        steps["trl-chunked-logprob"] = trl_head
    except ImportError:
        pass
    if device == "cuda":  # Liger's Triton kernels need a GPU
        try:
            from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

            steps["liger-flce"] = lambda: backward(liger_fused_linear_cross_entropy(h, w, t, ignore_index=-100))
        except ImportError:
            pass
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return {name: steps[name] for name in FLOOR_IMPLS if name in steps}, sync


def against_floor(shape: str, repeats: int, impls: list[str] = FLOOR_IMPLS) -> dict[str, float]:
    """Best-of-``repeats`` seconds per implementation (the floor and ``impls``), interleaved round by round."""
    steps, sync = _floor_steps(*map(int, shape.split("x")))
    steps = {name: step for name, step in steps.items() if name == "floor" or name in impls}
    best = {}
    for step in steps.values():  # one warm-up each
        step()
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            sync()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    return best


def print_against_floor(results: dict[str, dict[str, float]]) -> None:
    names = [n for n in FLOOR_IMPLS if n != "floor" and any(n in r for r in results.values())]
    print("\n| N × d × V | floor s | " + " | ".join(f"{n} / floor" for n in names)
          + " | fused-hypros / F.linear_cross_entropy | fused-hypros / fused-log | "
          + " | ".join(f"{a} / {b}" for a, b in FAMILY_RATIOS) + " |")
    print("|---|---:|" + "---:|" * (len(names) + 2 + len(FAMILY_RATIOS)))
    for shape, r in results.items():
        cells = [f"{r[n] / r['floor']:.2f}" if n in r else "—" for n in names]
        ratios = [_ratio(r, "fused-hypros", "F.linear_cross_entropy"), _ratio(r, "fused-hypros", "fused-log"),
                  *(_ratio(r, a, b) for a, b in FAMILY_RATIOS)]
        print(f"| {shape.replace('x', ' × ')} | {r['floor']:.3f} | " + " | ".join(cells + ratios) + " |")


def _ratio(r: dict[str, float], a: str, b: str) -> str:
    return f"{r[a] / r[b]:.2f}" if a in r and b in r else "—"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", help="NxDxV shapes (default: the part's own)")
    parser.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS, help="implementations of --memory")
    parser.add_argument("--floor-impls", nargs="+", default=FLOOR_IMPLS, choices=FLOOR_IMPLS,
                        help="implementations timed against the floor (default: all that import)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the memory part's results to this JSON file")
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--against-floor", action="store_true", help="only the interleaved timing against the floor")
    part.add_argument("--memory", action="store_true", help="only the memory part")
    args = parser.parse_args(argv)
    if not args.memory:
        run_against_floor(args.shapes or FLOOR_SHAPES, args.repeats, args.floor_impls)
    if not args.against_floor:
        run_memory(args.shapes or DEFAULT_SHAPES, args.impls, args.repeats, json_path=args.json)


def run_against_floor(shapes: list[str], repeats: int, impls: list[str] = FLOOR_IMPLS) -> None:
    import platform

    import torch

    print(f"# benchmarks/scoring.py --against-floor: forward + backward, best of {repeats} interleaved rounds, "
          f"{'CUDA bf16' if torch.cuda.is_available() else f'CPU fp32 ({torch.get_num_threads()} threads)'}, "
          f"torch {torch.__version__}, {platform.machine()}", flush=True)
    results = {}
    for shape in shapes:
        results[shape] = against_floor(shape, repeats, impls)
        print(f"{shape}: " + ", ".join(f"{k} {v:.3f} s" for k, v in results[shape].items()), flush=True)
    print_against_floor(results)


def run_memory(shapes: list[str], impls: list[str], repeats: int, *, json_path: str | None) -> None:
    print(f"\n# benchmarks/scoring.py --memory: extra peak memory and median time of {repeats} runs, a fresh process "
          f"per cell", flush=True)
    results: dict[str, dict[str, dict]] = {}
    print(f"{'shape N x d x V':>18} {'implementation':>24} {'fwd+bwd s':>10} {'extra MiB':>10}", flush=True)
    for shape in shapes:
        results[shape] = {}
        for impl in impls:
            r = measure(impl, shape, repeats)
            results[shape][impl] = r
            note = f"  killed for memory (> {_memory_mb():,.0f} MiB)" if r.get("killed") else ""
            print(f"{shape:>18} {impl:>24} {r['time_s']:>10.3f} {r['extra_mem_mb']:>10.0f}{note}", flush=True)
        _print_ratios(shape, results[shape])
    print_markdown(results)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)


def print_markdown(results: dict[str, dict[str, dict]]) -> None:
    """The documentation's table (docs/scoring.md): one row per shape (N × V), seconds and extra MiB per implementation."""
    def cell(r: dict, impl: str, *, mem: bool = False) -> str:
        if impl not in r:
            return "—"
        if r[impl].get("killed"):
            return f"killed for memory (> {_memory_mb():,.0f} MiB)"
        t = f"{r[impl]['time_s']:.4g}"
        return f"{t} / {r[impl]['extra_mem_mb']:.0f}" if mem else t

    print("\n| N × V | naive s / MiB | F.cross_entropy s / MiB | fused log s | fused Brier s | fused HyProS s / MiB "
          "| recompute s |")
    print("|---|---|---|---|---|---|---|")
    for shape, r in results.items():
        n, _, v = shape.split("x")
        print(f"| {n} × {v} | {cell(r, 'naive', mem=True)} | {cell(r, 'F.cross_entropy', mem=True)} | "
              f"{cell(r, 'fused-log')} | {cell(r, 'fused-brier')} | {cell(r, 'fused-hypros', mem=True)} | "
              f"{cell(r, 'fused-hypros-recompute')} |")


def _print_ratios(shape: str, r: dict[str, dict]) -> None:
    def ratio(a: str, b: str, key: str) -> str:
        if a not in r or b not in r:
            return "n/a"
        if r[b].get("killed") and key == "extra_mem_mb":  # b needed more than the machine has: a bound
            return f"< {r[a][key] / _memory_mb():.3f} ({b} killed for memory)"
        if not r[b][key] or r[b][key] != r[b][key]:
            return "n/a"
        return f"{r[a][key] / r[b][key]:.3f}"

    print(f"  ratios @ {shape}: memory fused-hypros/naive = {ratio('fused-hypros', 'naive', 'extra_mem_mb')} (goal ≤ 0.1)"
          f" | time fused-hypros/F.cross_entropy = {ratio('fused-hypros', 'F.cross_entropy', 'time_s')} (goal ≤ 1.1)"
          f" | time fused-hypros/fused-log = {ratio('fused-hypros', 'fused-log', 'time_s')} (goal ≤ 1.05)"
          f" | time recompute/grad-in-forward = {ratio('fused-hypros-recompute', 'fused-hypros', 'time_s')}",
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
