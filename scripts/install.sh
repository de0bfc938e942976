#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs openeo-airflow with the given extras (default: demo).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-demo}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
# uv resolves and installs Airflow's ~200 dependencies in seconds instead of minutes.
.venv/bin/python -m pip install --quiet --disable-pip-version-check uv
# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on our machines) every
# process (API, each Airflow task, each test subprocess) would otherwise recompile Airflow,
# pandas, scipy... from source on import: 3-5 s per process, measured.
.venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[${extras}]"
