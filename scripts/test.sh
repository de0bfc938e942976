#!/usr/bin/env bash
# README command 2: install with the dev tools and run the checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
bash scripts/install-system.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
lint-imports
mypy
pytest "$@"
