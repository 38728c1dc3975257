#!/usr/bin/env bash
# Build, or reuse, the environment the Axolotl integration runs and is tested in: Axolotl 0.21.0 needs Python >= 3.12
# and pins transformers, TRL, datasets and pydantic apart from constraints.txt, so it cannot share .venv. It holds
# Axolotl at the pins of constraints-axolotl.txt and hypros-lm from this checkout (editable, without its own
# dependencies: Axolotl brings torch and transformers). Rebuilt only when this script or constraints-axolotl.txt
# changes; the first build downloads about 5 GB (torch's CUDA build: the registry has no CPU build for Python 3.12).
#
#   bash scripts/axolotl_env.sh          # .venv-axolotl (HYPROS_AXOLOTL_ENV: elsewhere)
#   bash scripts/axolotl_env.sh lock     # rewrite constraints-axolotl.txt from a fresh `pip install axolotl==0.21.0`
#
# The interpreter: PYTHON312, else pyenv's newest 3.12 (the pins are 3.12's), else python3.12 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir=${HYPROS_AXOLOTL_ENV:-.venv-axolotl}
runs_312() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))' 2>/dev/null; }
if [ -n "${PYTHON312:-}" ]; then
  candidates=("$PYTHON312")
else  # pyenv's own folders before PATH: a pyenv shim for a version that is not selected fails
  candidates=($(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3 2>/dev/null | sort -V | tail -1) "$(command -v python3.12 || true)")
fi
python=""
for candidate in "${candidates[@]}"; do
  if runs_312 "$candidate"; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  echo "axolotl-env: no Python >= 3.12 found (Axolotl 0.21.0 needs one): pyenv install 3.12, or set" \
       "PYTHON312=/path/to/python3.12 (tried: ${candidates[*]:-nothing})" >&2
  exit 1
fi
if [ "${1:-}" = lock ]; then
  rm -rf "$env_dir.lock" && "$python" -m venv "$env_dir.lock"
  "$env_dir.lock/bin/python" -m pip install -q axolotl==0.21.0
  {
    echo "# The Axolotl environment's pins (Python $("$python" -c 'import platform; print(platform.python_version())')),"
    echo "# written by scripts/axolotl_env.sh lock; scripts/axolotl_env.sh installs with -c constraints-axolotl.txt."
    "$env_dir.lock/bin/python" -m pip freeze --exclude-editable | LC_ALL=C sort -f
  } > constraints-axolotl.txt
  rm -rf "$env_dir.lock"
  echo "wrote constraints-axolotl.txt ($(grep -c '==' constraints-axolotl.txt) pins)"
  exit 0
fi
stamp="$env_dir/.hypros-axolotl-$(cat scripts/axolotl_env.sh constraints-axolotl.txt | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "axolotl-env: installing Axolotl 0.21.0 (constraints-axolotl.txt) and hypros-lm into $env_dir with $python" \
       "(the first time: about 5 minutes and 7.6 GB)"
  [ -x "$env_dir/bin/python" ] || "$python" -m venv "$env_dir"
  start=$SECONDS
  "$env_dir/bin/python" -m pip install -q -c constraints-axolotl.txt axolotl==0.21.0
  "$env_dir/bin/python" -m pip install -q --no-deps -e .  # and its axolotl.plugins entry point
  rm -f "$env_dir"/.hypros-axolotl-*
  touch "$stamp"
  echo "axolotl-env: ready in $((SECONDS - start)) s, $(du -sh "$env_dir" | cut -f1)"
fi
