#!/usr/bin/env bash
# Runs Berth's whole test suite: unit tests and the integration tests that
# deploy real Python apps through the real binary. Needs uv and network
# access to PyPI (wheels are cached in $BERTH_TEST_UV_CACHE or /tmp).
set -euo pipefail
cd "$(dirname "$0")"
command -v uv >/dev/null 2>&1 || { echo "test.sh: uv is needed: python3 -m pip install uv" >&2; exit 1; }
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
