#!/usr/bin/env bash
# All eight offline lm-eval tasks in full (no --limit) on a run (default: the demo's, runs/cpu-demo), timed.
#   bash scripts/zeroshot_full.sh [RUN_DIR] [extra eval/zeroshot.py arguments, e.g. --device cuda]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
run=${1:-runs/cpu-demo}
shift || true
[ -d "$run/checkpoints" ] || { echo "zeroshot_full: $run is not a trained run (bash scripts/demo.sh makes runs/cpu-demo)"; exit 1; }
start=$(date +%s)
python eval/zeroshot.py "$run" --tasks lambada_openai arc_easy arc_challenge piqa winogrande boolq hellaswag wikitext \
  --batch-size 32 --out "$run/zeroshot-full" "$@"
echo "zeroshot_full: all eight tasks in full in $(( $(date +%s) - start )) s"
