"""The fused head's time at an earlier revision of the code and at the working tree, side by side: a regression check
of the kernel after a refactor.

    python benchmarks/revisions.py --base 846aa61            # docs/benchmarks/revisions-cpu.txt
    python benchmarks/revisions.py --base v0.1.0 --shapes 8192x256x32768 --impls fused-hypros --rounds 5

The base is checked out once (``git worktree add`` into a temporary folder, removed afterwards). Each round runs every
(implementation, shape) once at each revision, alternating which goes first, each in a fresh process importing that
revision's ``hypros_lm`` (forward + backward on ``benchmarks/scoring.py``'s seeded inputs, one warm-up, then the
best of ``--repeats``); the table keeps each revision's best over the rounds and the ratio head / base, so that a
drift of the machine falls on both. Implementations: the fused ones of ``benchmarks/scoring.py`` (``FUSED``) whose
keywords the base revision takes too (``alpha`` is newer than the score registry).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPLS = ["fused-log", "fused-brier", "fused-spherical", "fused-hypros"]
SHAPES = ["8192x256x32768", "16384x256x50304", "4096x1024x50304"]  # benchmarks/scoring.py's floor shapes


def _child(impl: str, shape: str, repeats: int) -> None:
    """In a fresh process whose PYTHONPATH is a revision's root: that revision's fused head, timed."""
    import torch
    from scoring import FUSED, _inputs  # benchmarks/scoring.py beside this file: the same names and seeded inputs

    import hypros_lm
    from hypros_lm.scoring import fused_linear_score

    h, w, t, _ = _inputs(*map(int, shape.split("x")))

    def step() -> float:
        start = time.perf_counter()
        fused_linear_score(h, w, t, **FUSED[impl]).loss.backward()
        h.grad = w.grad = None
        return time.perf_counter() - start

    step()
    best = min(step() for _ in range(repeats))
    print(json.dumps({"time_s": best, "torch": torch.__version__, "module": hypros_lm.__file__}))


def _time(root: Path, impl: str, shape: str, repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, __file__, "--child", impl, shape, str(repeats)], env=env,
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["module"].startswith(str(root)), f"{root} did not provide hypros_lm: {result['module']}"
    return result["time_s"]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--shapes", nargs="+", default=SHAPES)
    parser.add_argument("--impls", nargs="+", default=IMPLS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "SHAPE", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child[0], args.child[1], int(args.child[2]))
    if not args.base:
        parser.error("--base is required: the revision to compare the working tree with (e.g. --base HEAD~3)")
    commit = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    import torch

    print(f"# benchmarks/revisions.py --base {args.base} ({commit}) against the working tree: forward + backward, "
          f"best of {args.repeats} × {args.rounds} alternating rounds, fresh processes, CPU fp32 "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}, {platform.machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base_root = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_root), commit], cwd=REPO, check=True,
                       capture_output=True)
        try:
            best: dict[tuple[str, str, str], float] = {}
            for r in range(args.rounds):
                for shape in args.shapes:
                    for impl in args.impls:
                        order = [("base", base_root), ("head", REPO)][:: 1 if r % 2 == 0 else -1]
                        for name, root in order:
                            seconds = _time(root, impl, shape, args.repeats)
                            best[name, shape, impl] = min(seconds, best.get((name, shape, impl), float("inf")))
                            print(f"round {r + 1} {shape} {impl} {name}: {seconds:.3f} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_root)], cwd=REPO, check=False)
    print(f"\n| N × d × V | implementation | {commit} s | working tree s | working tree / {commit} |\n|---|---|---:|---:|---:|")
    for shape in args.shapes:
        for impl in args.impls:
            base, head = best["base", shape, impl], best["head", shape, impl]
            print(f"| {shape.replace('x', ' × ')} | {impl} | {base:.3f} | {head:.3f} | {head / base:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
