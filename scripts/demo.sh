#!/usr/bin/env bash
# The main job on the embedded default, no Azure account needed: builds the handler, starts it
# as the Functions host would, delivers sample alerts over HTTP in both host forms and as an
# Event Grid webhook batch, redelivers the batch (every event is recognised as a duplicate),
# then shows what each queue holds and what waits for a decision.
#
# One function per step; main() at the bottom lists them in order. Needs Rust (cargo) and
# python3. Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/defender-responder
alerts=tests/fixtures/alerts
work=""
handler=""
url=""

say() { printf '\n== %s\n' "$*"; }

cleanup() {
  if [ -n "$handler" ]; then
    kill "$handler" 2> /dev/null || true
    wait "$handler" 2> /dev/null || true
  fi
  if [ -n "$work" ]; then rm -rf "$work"; fi
}

require() {
  local missing=()
  command -v cargo > /dev/null 2>&1 || missing+=("cargo (Rust stable: https://rustup.rs, or any Rust >= 1.88 on PATH)")
  command -v python3 > /dev/null 2>&1 || missing+=("python3")
  if [ "${#missing[@]}" -gt 0 ]; then
    printf 'demo: missing: %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

build() {
  if [ -x "$binary" ]; then
    say "Building the release binary (cargo build --release; seconds when nothing changed)"
  else
    say "Building the release binary (cargo build --release)"
    echo "   The first build downloads and compiles about 230 crates with optimisations (the"
    echo "   AMQP and Azure clients, SQLite, the HTTP stack): about 8 minutes on 2 cores, over 20"
    echo "   when other work keeps them busy. Later runs reuse target/ and take seconds."
    echo "   cargo's progress follows."
  fi
  cargo build --release --locked --bin defender-responder
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts `serve` as the Functions host does: FUNCTIONS_CUSTOMHANDLER_PORT, then polls until the
# port answers. A port taken between choosing and binding gets another try.
start_handler() {
  work=$(mktemp -d)
  export RESPONDER_STORE_PATH="$work/store.sqlite3"
  local attempt port
  for attempt in 1 2 3; do
    port=$(free_port)
    FUNCTIONS_CUSTOMHANDLER_PORT="$port" "$binary" serve > "$work/handler.log" 2>&1 &
    handler=$!
    for _ in $(seq 1 400); do
      if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
        url="http://127.0.0.1:$port"
        say "Handler listening at $url (store: $RESPONDER_STORE_PATH)"
        return 0
      fi
      kill -0 "$handler" 2> /dev/null || break
      sleep 0.025
    done
    kill "$handler" 2> /dev/null || true
    wait "$handler" 2> /dev/null || true
    handler=""
    echo "demo: the handler did not come up on port $port (attempt $attempt):" >&2
    cat "$work/handler.log" >&2
  done
  exit 1
}

# One line per event of a `send` reply file: the file, the event's outcome and its reason.
summarise_replies() {
  python3 - "$1" <<'PY'
import json, sys, textwrap
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
for header, body in zip(lines[0::2], lines[1::2]):
    name, status = header.split(" -> ")[0].rsplit("/", 1)[-1], header.rsplit(": ", 1)[-1]
    reply = json.loads(body)
    reports = reply["events"] if "events" in reply else [reply["ReturnValue"]]
    for report in reports:
        tasks = len(report.get("tasks") or [])
        print(f"   {name:<48} {status:<7} {report['outcome']:<10} {tasks} task(s)")
        print("      " + textwrap.shorten(report["reason"], 100, placeholder=" ..."))
PY
}

deliver() {
  say "Delivering sample alerts: as the Functions host invokes the handler, and as an Event Grid webhook batch"
  local replies="$work/replies.txt"
  "$binary" send --url "$url" --as host "$alerts/keyvault-KV_SuspiciousIPAccess-egrest.json" > "$replies"
  "$binary" send --url "$url" --as host --string-form "$alerts/dns-AzureDNS_SinkholedDomain-egrest.json" >> "$replies"
  "$binary" send --url "$url" --as webhook "$alerts/eventgrid-batch-mixed3.json" >> "$replies"
  summarise_replies "$replies"
}

redeliver() {
  say "The same batch again (an Event Grid retry): every event is a duplicate, nothing new is queued"
  local replies="$work/retry.txt"
  "$binary" send --url "$url" --as webhook "$alerts/eventgrid-batch-mixed3.json" > "$replies"
  summarise_replies "$replies"
}

# The running handler holds the embedded store exclusively: stop it before reading the store.
stop_handler() {
  say "Stopping the handler (while it serves, it holds the embedded store exclusively)"
  kill "$handler" 2> /dev/null || true
  wait "$handler" 2> /dev/null || true
  handler=""
}

show_queues() {
  say "What the queues of the embedded store hold (defender-responder queues --format table)"
  "$binary" queues --format table --peek 2
}

main() {
  trap cleanup EXIT
  require
  build
  start_handler
  deliver
  redeliver
  stop_handler
  show_queues
  say "Done. Plan any alert offline: $binary plan --format table $alerts/<file>.json"
}

main "$@"
