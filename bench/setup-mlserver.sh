#!/usr/bin/env bash
# Create bench/.venv-mlserver: MLServer 1.7.x with its scikit-learn runtime, in its own virtual environment
# (MLServer 1.7 pins an older FastAPI and python<3.13, so it cannot share corral's .venv).
# uvloop is pinned to 0.21.0: with uvloop 0.23 MLServer's workers die ("no current event loop").
# scikit-learn is pinned to the version in corral's .venv, so both servers load the same model the same way.
# Usage: bench/setup-mlserver.sh [PYTHON]   (default: python3); idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-mlserver"
python="${1:-python3}"
sklearn_version="$("$here/../.venv/bin/python" -c 'import sklearn; print(sklearn.__version__)' 2>/dev/null || true)"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
"$venv/bin/pip" install --quiet "mlserver>=1.7,<1.8" "mlserver-sklearn>=1.7,<1.8" "uvloop==0.21.0" \
  ${sklearn_version:+"scikit-learn==$sklearn_version"}
"$venv/bin/mlserver" --version
