#!/usr/bin/env bash
# The main job: set up, then a small HyProS pretraining run on real WikiText-2 (configs/cpu-demo.yaml).
# Extra arguments override settings, e.g. `scripts/demo.sh --max-steps 100 --out runs/quick`.
# Re-running continues the run in runs/cpu-demo from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
# no GPU here: say so, instead of letting DeepSpeed guess (and warn about its guess) in each of its processes
if ! command -v nvidia-smi >/dev/null 2>&1; then export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}; fi
echo "demo: HyProS pretraining of the micro model on WikiText-2 (configs/cpu-demo.yaml) into runs/cpu-demo;" \
     "starting DeepSpeed (its import takes about half a minute), then the corpus is prepared once and 400 steps train;" \
     "the last line 'val @ 400' gives the validation perplexity (also in runs/cpu-demo/metrics.jsonl)"
exec deepspeed --num_gpus "${HYPROS_RANKS:-1}" --master_port "${MASTER_PORT:-29517}" \
  launch/pretrain.py --config configs/cpu-demo.yaml --loss hypros --resume "$@"
