#!/usr/bin/env bash
# Conformance suite: builds azure-sim, starts it on a free port, and drives it with the official
# Azure SDK for Python (pinned in requirements.txt, installed into sim/tests/.venv when missing).
# Usage: sim/tests/run.sh [pytest args]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${AZURE_SIM_VENV:-$here/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
wanted="$(grep -vE '^(#|$)' "$here/requirements.txt" | sort)"
have="$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | sort)"
missing="$(comm -23 <(echo "$wanted") <(echo "$have"))"
if [ -n "$missing" ]; then
  echo "sim/tests: installing $(echo "$missing" | wc -l) pinned packages from PyPI" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"
fi

cargo build --quiet -p azure-sim --manifest-path "$root/Cargo.toml"
binary="${CARGO_TARGET_DIR:-$root/target}/debug/azure-sim"
log="$(mktemp)"
"$binary" --port 0 --seed "$root/sim/seeds/example.json" >"$log" 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  grep -q '^azure-sim ready ' "$log" && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.05
done
ready="$(sed -n 's/^azure-sim ready //p' "$log" | head -1)"
[ -n "$ready" ] || { echo "azure-sim did not become ready" >&2; cat "$log" >&2; exit 1; }
echo "azure-sim: $ready" >&2
AZURE_SIM_READY="$ready" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/conformance" "$@"
