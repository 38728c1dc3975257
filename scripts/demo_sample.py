"""Run the main job (scripts/demo.sh) into a fresh folder and write what it printed into the pretraining page.

    python scripts/demo_sample.py                  # about 2 minutes on 2 cores; rewrites docs/pretraining.md's sample

The page's sample sits between ``<!-- demo-output -->`` and ``<!-- /demo-output -->``: the run's own lines (DeepSpeed's
and wandb's left out, step lines thinned to the evaluated steps and the first), its wall-clock, and the validation
perplexity of the last evaluation with the metrics.jsonl it comes from. tests/docs/test_demo_sample.py checks that the
sample's console lines have today's format.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "pretraining.md"
START, END = "<!-- demo-output -->", "<!-- /demo-output -->"
OWN = re.compile(r"^(demo:|tokenizer:|data:|init:|head:|model:|loss:|efficiency:|step |  val @|done:)")


def kept(lines: list[str], evaluated: set[int]) -> list[str]:
    """The run's own lines; of the step lines, the first and those of evaluated steps (``...`` between)."""
    out, first = [], True
    for line in lines:
        if not OWN.match(line):
            continue
        step = re.match(r"^step +(\d+)/", line)
        if step and not (first or int(step.group(1)) in evaluated):
            if out[-1] != "...":
                out.append("...")
            continue
        first = first and not step
        out.append(line)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cpu-demo"
        start = time.perf_counter()
        proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), "--out", str(out)], cwd=REPO,
                              capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"the demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        home = str(Path.home())
        shared = str(REPO.parent / "shared")
        lines = [line.replace(str(out), "runs/cpu-demo").replace(shared, "../shared").replace(home, "~")
                 for line in proc.stdout.splitlines()]
    val = [r for r in records if r["split"] == "val"]
    sample = kept(lines, {r["step"] for r in val})
    last = val[-1]
    block = "\n".join([
        START,
        f"Measured by `python scripts/demo_sample.py` ({time.strftime('%Y-%m-%d')}, 2 CPU cores, `.venv` set up): "
        f"**{seconds:.0f} s wall-clock**. The last evaluation (step {last['step']}) reads validation perplexity "
        f"**{last['perplexity']:.1f}** (log-loss {last['loss_log']:.4f} nats, ECE {last['ece_10']:.4f}), the "
        f"`split: val` record of `runs/cpu-demo/metrics.jsonl`. It printed (DeepSpeed's and wandb's lines left out, "
        f"and the step lines between evaluations):",
        "", "```", *sample, "```", END,
    ])
    page = PAGE.read_text()
    a, b = page.index(START), page.index(END) + len(END)
    PAGE.write_text(page[:a] + block + page[b:])
    print(block)


if __name__ == "__main__":
    main()
