#!/usr/bin/env bash
# README command 1: install, start the local stack and run the NDVI demo job.
# Extra arguments go to `openeo-airflow demo` (e.g. --exit, --port 8081, --home DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh demo
exec .venv/bin/openeo-airflow demo "$@"
