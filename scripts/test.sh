#!/usr/bin/env bash
# Set up, then run the test suite offline, on HYPROS_TEST_WORKERS pytest-xdist workers (2: this project's
# 2-core CI; 0 runs in this process). Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
exec python -m pytest -n "${HYPROS_TEST_WORKERS:-2}" --dist loadfile "$@"
