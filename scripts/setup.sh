#!/usr/bin/env bash
# Set up .venv on a fresh machine: torch first (the CPU build by default), then hypros-lm and its tools.
# Re-running is cheap: nothing is reinstalled while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC=${HYPROS_TORCH_SPEC:-torch==2.13.0}  # on a GPU cluster: your CUDA build, e.g. "torch==2.13.0+cu128"
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.hypros-installed-$(sha256sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing $TORCH_SPEC, then hypros-lm[train,dev] into .venv (a few minutes the first time)"
  python -m pip install -q --upgrade pip
  # torch before the project: a bare `pip install torch` would pull a multi-GB CUDA build
  python -c "import torch" 2>/dev/null || python -m pip install -q "$TORCH_SPEC"
  python -m pip install -q -e ".[train,dev]"
  rm -f .venv/.hypros-installed-*
  touch "$stamp"
fi
# The rating page's browser test drives a real headless Chromium (Debian packages, installed as root)
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
