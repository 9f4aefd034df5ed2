#!/usr/bin/env bash
# Create bench/.venv-evidently: Evidently 0.7.x in its own virtual environment (Evidently 0.7 does not import with
# pandas 3, which corral's .venv has), with pandas<3 and pyarrow so it reads the same Parquet files as corral.
# Usage: bench/setup-evidently.sh [PYTHON]   (default: python3); idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-evidently"
python="${1:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet "evidently==0.7.*" "pandas<3" pyarrow
"$venv/bin/python" -c 'import evidently, pandas; print("evidently", evidently.__version__, "pandas", pandas.__version__)'
