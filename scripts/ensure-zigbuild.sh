#!/usr/bin/env bash
# Makes `cargo zigbuild` available for building the deployment binary against an old glibc:
# zig from the PyPI package `ziglang` (python3 -m pip install --user when not root) and
# cargo-zigbuild from crates.io (cargo install --locked), each only when missing.
# Prints what it installs. Usage: scripts/ensure-zigbuild.sh
set -euo pipefail

if ! command -v zig > /dev/null 2>&1 && ! python3 -c 'import ziglang' 2> /dev/null; then
  echo "ensure-zigbuild: installing zig (python3 -m pip install ziglang)" >&2
  pip_args=(--quiet)
  [ "$(id -u)" -eq 0 ] || pip_args+=(--user)
  python3 -m pip install "${pip_args[@]}" ziglang \
    || python3 -m pip install "${pip_args[@]}" --break-system-packages ziglang
fi
if ! cargo zigbuild --help > /dev/null 2>&1; then
  echo "ensure-zigbuild: installing cargo-zigbuild (cargo install --locked cargo-zigbuild; a few minutes, once)" >&2
  cargo install --locked --quiet cargo-zigbuild
fi
zig_version=$(command -v zig > /dev/null 2>&1 && zig version || python3 -m ziglang version)
echo "ensure-zigbuild: $(cargo-zigbuild --version 2>/dev/null | head -1), zig ${zig_version}" >&2
