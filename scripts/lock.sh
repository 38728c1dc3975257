#!/usr/bin/env bash
# Regenerate constraints.txt, the pinned environment scripts/setup.sh installs from: every package of the
# set-up .venv at the version the test suite ran with. torch is left out (setup.sh installs it first, from
# HYPROS_TORCH_SPEC: the CPU build here, a CUDA build on a cluster). Run after changing pyproject.toml's
# dependencies and passing the tests:   bash scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Pinned environment of hypros-lm's tests (Python $(.venv/bin/python -c 'import platform; print(platform.python_version())')),"
  echo "# written by scripts/lock.sh; scripts/setup.sh installs with -c constraints.txt."
  .venv/bin/python -m pip freeze --exclude-editable --all | grep -v -i -E '^(torch|pip|setuptools|wheel)==' | LC_ALL=C sort -f
} > constraints.txt
echo "wrote constraints.txt ($(grep -c '==' constraints.txt) pins)"
