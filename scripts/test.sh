#!/usr/bin/env bash
# Set up, then run the test suite offline, on HYPROS_TEST_WORKERS pytest-xdist workers (2: this project's
# 2-core CI; 0 runs in this process). Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Axolotl's own environment (Python >= 3.12, its pins) for tests/integrations/test_axolotl.py; reused once built
bash scripts/axolotl_env.sh
# torchtitan's (its datasets pin) for tests/integrations/test_torchtitan.py; reused once built
bash scripts/torchtitan_env.sh
# The tests' set-up only (the main job needs no browser): the rating page's and the site's browser tests drive a
# real headless Chromium (Debian packages, installed as root)
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver (Debian packages) for the rating page's browser test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }
  else
    echo "setup: chromium/chromedriver missing and not root: the browser test will be skipped" \
         "(as root: apt-get install chromium chromium-driver)"
  fi
fi
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
# whole files to a worker, the costliest first (tests/conftest.py orders them by tests/file_seconds.json)
exec python -m pytest -n "${HYPROS_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
