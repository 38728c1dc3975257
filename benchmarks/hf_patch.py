"""One training step of a Hugging Face Llama: patched (the fused HyProS head) against unpatched
(transformers' own logits and cross-entropy), peak memory and time side by side in one run.

    python benchmarks/hf_patch.py                          # vocab 32k, 4 × 1024 tokens, fp32, CPU
    python benchmarks/hf_patch.py --vocab 32000 --batch 8 --seq-len 2048 --repeats 5

Each measurement is a fresh process (so no allocator cache carries over) that builds the same model
(2 layers, width 256: the head dominates, as it does for small models with large vocabularies), runs one
warm-up step, then resets the kernel's peak-RSS mark (/proc/self/clear_refs) and times one forward +
backward + optimizer step on real WikiText-2 tokens. "peak over start" is the resident-memory high-water
mark of that step minus the resident memory before it: the step's own working memory. The variants
alternate (unpatched, patched, unpatched, ...) so that drift hits both; medians are reported. The
logits row is B·T·V·4 bytes, the fp32 tensor the unpatched step builds and the patched one never does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def one_measurement(variant: str, *, vocab: int, batch: int, seq_len: int) -> dict:
    """Run in a child process: one warm-up step, then one measured step."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(REPO))
    from hypros_lm.integrations.transformers import patch_causal_lm
    from tests.integrations.hf_models import wikitext_lines

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=seq_len)
    model = LlamaForCausalLM(config)
    if variant == "patched":
        patch_causal_lm(model, lam=0.3)  # HyProS mid-schedule: log and Brier both present
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    text = " ".join(wikitext_lines("train")[:4000]).encode()  # real text, bytes as ids (any ids < vocab do)
    ids = torch.tensor(list(text[: batch * seq_len]), dtype=torch.long).view(batch, seq_len)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)  # the gradients stay allocated: the step's memory is what it adds
        return loss

    step()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    return {"variant": variant, "seconds": seconds, "peak_over_start_mib": (_rss_kib("VmHWM") - start) / 1024}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = dict(vocab=args.vocab, batch=args.batch, seq_len=args.seq_len)
    if args.child:
        print(json.dumps(one_measurement(args.child, **shape)))
        return
    results: dict[str, list[dict]] = {"unpatched": [], "patched": []}
    for r in range(args.repeats):
        for variant in ("unpatched", "patched"):
            cmd = [sys.executable, __file__, "--child", variant, *(f"--{k.replace('_', '-')}={v}" for k, v in shape.items())]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
            results[variant].append(json.loads(out.strip().splitlines()[-1]))
            print(f"  repeat {r + 1}/{args.repeats} {variant}: {results[variant][-1]}", file=sys.stderr)
    logits_mib = args.batch * args.seq_len * args.vocab * 4 / 2**20
    med = {v: {k: statistics.median(x[k] for x in rs) for k in ("seconds", "peak_over_start_mib")}
           for v, rs in results.items()}
    import torch

    print(f"# benchmarks/hf_patch.py: Llama (2 layers, width 256), vocab {args.vocab}, {args.batch} × {args.seq_len} "
          f"tokens, fp32, CPU ({torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"medians of {args.repeats} fresh processes each")
    print("| step | peak over start (MiB) | s/step |")
    print("|---|---:|---:|")
    for v in ("unpatched", "patched"):
        print(f"| {v} | {med[v]['peak_over_start_mib']:.0f} | {med[v]['seconds']:.2f} |")
    saved = med["unpatched"]["peak_over_start_mib"] - med["patched"]["peak_over_start_mib"]
    print(f"| logits (B·T·V·4 bytes) | {logits_mib:.0f} | |")
    print(f"\npatched saves {saved:.0f} MiB = {saved / logits_mib:.2f} × the logits; "
          f"time ratio patched/unpatched {med['patched']['seconds'] / med['unpatched']['seconds']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
