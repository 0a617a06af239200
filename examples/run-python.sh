#!/usr/bin/env bash
# Install the generated Python package into the dev venv (./.venv, from `just setup`),
# type-check the Python example with mypy --strict, then run it against the system at
# USER_SERVICE_URL (default http://127.0.0.1:8080). For a private, throwaway system:
#   tools/with-system.sh examples/run-python.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x .venv/bin/python ] || { echo "no .venv: run 'just setup' (or 'cargo xtask setup') first" >&2; exit 1; }
.venv/bin/pip install --quiet --disable-pip-version-check ./gen/python
.venv/bin/python -m mypy --strict examples/python
.venv/bin/python examples/python/quickstart.py
