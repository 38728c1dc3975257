#!/usr/bin/env bash
# One-command check of the GPU paths on a bare CUDA machine without internet.
#
#   bash scripts/gpu_check.sh prepare   # where the package index is reachable: wheels + WikiText-2 into .gpu/
#   bash scripts/gpu_check.sh           # on the GPU machine (with .gpu/ copied beside the checkout)
#
# The run installs what the machine lacks from .gpu/wheels (never from the network), then:
#   1. the requires_gpu tests;
#   2. a bf16 ZeRO-2 training run of `base` (1024-token sequences) with SDPA, and with flash-attention 2
#      when it imports; each prints its console lines (tokens/s, TFLOP/s, MFU, memory);
#   3. the fused scoring head against the three-matmul floor, PyTorch's chunked F.linear_cross_entropy, TRL's and
#      Liger's heads in bf16 at a Llama-3 head shape (N = 8192, d = 4096, V = 128,256), and against materialised
#      F.cross_entropy (time and peak memory);
#   4. the stack's training step against the plain PyTorch loop (benchmarks/peers.py);
#   5. a summary of tokens/s, TFLOP/s, MFU and peak memory read from the runs' metrics.jsonl.
# It assumes a python3 with CUDA PyTorch, numpy, tokenizers, transformers, pytest (as GPU images have).
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=${HYPROS_GPU_CARRY:-.gpu}
WHEELS="deepspeed hjson pydantic pydantic-core annotated-types typing-inspection"

if [ "${1:-}" = "prepare" ]; then
  set -e
  mkdir -p "$CARRY/wheels" "$CARRY/data"
  bash scripts/setup.sh >/dev/null  # the versions carried are the ones this project is tested with (.venv)
  version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
  for name in $WHEELS; do
    [ "$name" = deepspeed ] && continue
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$CARRY/wheels" "$name==$(version "$name")"
  done
  # DeepSpeed ships as source only: build its pure-Python wheel here (its CUDA ops compile on first use there)
  DS_BUILD_OPS=0 .venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$CARRY/wheels" \
    "deepspeed==$(version deepspeed)"
  data=${HYPROS_DATA_DIR:-../shared/data}
  cp -r "$data/wikitext-2" "$CARRY/data/"
  echo "gpu_check: prepared $CARRY ($(du -sh "$CARRY" | cut -f1)); copy it beside the checkout on the GPU machine"
  exit 0
fi

python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || { echo "gpu_check: torch sees no CUDA device here; run this on the GPU machine"; exit 1; }
if [ -d "$CARRY/wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/hypros-site "$CARRY"/wheels/* \
    || { echo "gpu_check: installing the wheels in $CARRY/wheels failed"; exit 1; }
  export PYTHONPATH="/tmp/hypros-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -d "$CARRY/data" ] && export HYPROS_DATA_DIR="$PWD/$CARRY/data"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export HYPROS_CACHE_DIR=${HYPROS_CACHE_DIR:-/tmp/hypros-cache} DS_BUILD_OPS=0 DS_SKIP_CUDA_CHECK=1
OUT=${GPU_CHECK_OUT:-/tmp/hypros-gpu-check}
rm -rf "$OUT" && mkdir -p "$OUT"
status=0

echo "== environment"
python3 - <<'EOF'
import importlib.util, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
for name in ("deepspeed", "flash_attn", "pynvml"):
    print(f"{name}: {'importable' if importlib.util.find_spec(name) else 'missing'}")
EOF

echo "== requires_gpu tests"
python3 -m pytest -q -m requires_gpu -p no:cacheprovider tests || status=1

echo "== bf16 ZeRO-2 training of base"
attentions="sdpa"
python3 -c "import flash_attn" 2>/dev/null && attentions="sdpa flash_attention_2"
for attn in $attentions; do
  python3 launch/pretrain.py --model base --precision bf16 --ds-config zero2 --model.attention "$attn" \
    --seq-len 1024 --micro-batch-size 8 --max-steps 30 --optim.warmup_steps 5 --train.log_every 10 \
    --train.eval_every 0 --train.component_grad_every 10 --telemetry.wandb disabled --out "$OUT/base-$attn" \
    2>&1 | grep -v "Warning\|warn(" || status=1
done

echo "== fused head against the matmul floor and the anchors (bf16, Llama-3 head)"
python3 benchmarks/scoring.py --against-floor --shapes 8192x4096x128256 --repeats 3 || status=1

echo "== fused head vs materialised F.cross_entropy (bf16)"
python3 benchmarks/scoring.py --memory --shapes 16384x1024x50304 --impls F.cross_entropy fused-log fused-hypros \
  --repeats 3 || status=1

echo "== the stack's step against the plain loop"
python3 benchmarks/peers.py --rungs micro tiny --steps 6 || status=1

echo "== summary (last logged step of each run)"
python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
for metrics in sorted(Path(sys.argv[1]).glob("*/metrics.jsonl")):
    train = [r for r in map(json.loads, metrics.read_text().splitlines()) if r["split"] == "train"]
    r = train[-1]
    mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "n/a"
    energy = f"{r['energy_j_per_step']:.0f} J/step" if r.get("energy_j_per_step") is not None else "no energy"
    print(f"{metrics.parent.name}: {r['tokens_per_s']:,.0f} tokens/s, {r['tflops_per_device']:.1f} TFLOP/s, "
          f"MFU {mfu}, peak memory {r['peak_mem_mb'] / 1024:.1f} GiB, {energy}")
EOF
echo "gpu_check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
