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
exec deepspeed --num_gpus "${HYPROS_RANKS:-1}" --master_port "${MASTER_PORT:-29517}" \
  launch/pretrain.py --config configs/cpu-demo.yaml --loss hypros --resume "$@"
