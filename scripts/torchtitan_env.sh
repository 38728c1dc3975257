#!/usr/bin/env bash
# Build, or reuse, the environment the torchtitan integration runs and is tested in: torchtitan 0.3.0 pins
# datasets < 4.8 (the project's constraints.txt has 5.x) and brings spmd-types, so it cannot share .venv. It holds
# the project's torch (HYPROS_TORCH_SPEC, as scripts/setup.sh), torchtitan at the pins of constraints-torchtitan.txt
# and hypros-lm from this checkout (editable, without its own dependencies: the fused head needs torch alone), and
# triton, which torchtitan's models import (a CUDA build of torch brings it; the CPU build does not).
# Rebuilt only when this script or constraints-torchtitan.txt changes.
#
#   bash scripts/torchtitan_env.sh          # .venv-torchtitan (HYPROS_TORCHTITAN_ENV: elsewhere)
#   bash scripts/torchtitan_env.sh lock     # rewrite constraints-torchtitan.txt from a fresh install of torchtitan
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir=${HYPROS_TORCHTITAN_ENV:-.venv-torchtitan}
torch_spec=${HYPROS_TORCH_SPEC:-torch==2.13.0}
python=${PYTHON:-python3}
install() {  # $1: the environment; the rest: pip's arguments after torch is in
  [ -x "$1/bin/python" ] || "$python" -m venv "$1"
  "$1/bin/python" -c "import torch" 2>/dev/null || "$1/bin/python" -m pip install -q "$torch_spec"
  "$1/bin/python" -m pip install -q "${@:2}"
}
if [ "${1:-}" = lock ]; then
  rm -rf "$env_dir.lock"
  install "$env_dir.lock" torchtitan==0.3.0 triton "$torch_spec"
  {
    echo "# The torchtitan environment's pins (Python $("$env_dir.lock/bin/python" -c 'import platform; print(platform.python_version())')),"
    echo "# written by scripts/torchtitan_env.sh lock; scripts/torchtitan_env.sh installs with -c constraints-torchtitan.txt."
    "$env_dir.lock/bin/python" -m pip freeze --exclude-editable | grep -v -i '^torch==' | LC_ALL=C sort -f
  } > constraints-torchtitan.txt
  rm -rf "$env_dir.lock"
  echo "wrote constraints-torchtitan.txt ($(grep -c '==' constraints-torchtitan.txt) pins)"
  exit 0
fi
stamp="$env_dir/.hypros-torchtitan-$(cat scripts/torchtitan_env.sh constraints-torchtitan.txt | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "torchtitan-env: installing torchtitan 0.3.0 (constraints-torchtitan.txt) and hypros-lm into $env_dir"
  start=$SECONDS
  install "$env_dir" -c constraints-torchtitan.txt torchtitan==0.3.0 triton "$torch_spec"
  "$env_dir/bin/python" -m pip install -q --no-deps -e .
  rm -f "$env_dir"/.hypros-torchtitan-*
  touch "$stamp"
  echo "torchtitan-env: ready in $((SECONDS - start)) s, $(du -sh "$env_dir" | cut -f1)"
fi
