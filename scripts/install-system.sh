#!/usr/bin/env bash
# System packages the test suite uses: a PostgreSQL server (the production job database) that the
# tests start themselves on loopback. Installed with apt when missing and we are root; otherwise
# the PostgreSQL tests skip with a reason.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
else
  echo "note: PostgreSQL server not installed; its tests will be skipped" >&2
fi
