#!/usr/bin/env bash
# Installs Berth from this checkout: uv (the Python build tool Berth drives)
# if it is missing, then the `berth` binary into ~/.cargo/bin.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v uv >/dev/null 2>&1; then
  echo "install.sh: installing uv from PyPI" >&2
  python3 -m pip install --quiet uv
fi
command -v cargo >/dev/null 2>&1 || { echo "install.sh: Rust's cargo is needed (https://rustup.rs)" >&2; exit 1; }
cargo install --locked --quiet --path crates/berth --root "${BERTH_INSTALL_ROOT:-$HOME/.cargo}"
echo "berth installed: ${BERTH_INSTALL_ROOT:-$HOME/.cargo}/bin/berth (uv: $(command -v uv))"
