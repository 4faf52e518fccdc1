#!/usr/bin/env bash
# Runs the main job on the embedded default, no Azure account needed: builds the handler,
# starts it as the Functions host would, delivers the sample alerts over HTTP in both host
# forms and as an Event Grid webhook batch, then lists what landed on the three queues.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --quiet
binary=target/release/defender-responder
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export RESPONDER_STORE_PATH="${RESPONDER_STORE_PATH:-$work/store.sqlite3}"
export FUNCTIONS_CUSTOMHANDLER_PORT="$port"

"$binary" serve > "$work/handler.log" 2>&1 &
handler=$!
trap 'kill "$handler" 2>/dev/null || true; wait "$handler" 2>/dev/null || true' EXIT
for _ in $(seq 1 400); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
  sleep 0.025
done

url="http://127.0.0.1:$port"
alerts=tests/fixtures/alerts
echo "== Delivering sample alerts to the handler at $url (store: $RESPONDER_STORE_PATH)"
"$binary" send --url "$url" --as host "$alerts/keyvault-KV_SuspiciousIPAccess-egrest.json" | head -c 600; echo
"$binary" send --url "$url" --as host --string-form "$alerts/dns-AzureDNS_SinkholedDomain-egrest.json" > /dev/null
"$binary" send --url "$url" --as webhook "$alerts/eventgrid-batch-mixed3.json" > /dev/null
echo "== The same batch again (an Event Grid retry): every event is a duplicate"
"$binary" send --url "$url" --as webhook "$alerts/eventgrid-batch-mixed3.json" | python3 -c '
import json, sys
lines = sys.stdin.read().split("\n", 1)
print(lines[0]); print([e["outcome"] for e in json.loads(lines[1])["events"]])'
echo "== Queues in the embedded store"
"$binary" queues --peek 1 | python3 -c '
import json, sys
for q in json.load(sys.stdin)["queues"]:
    print("%13s: %d task(s)" % (q["queue"], q["count"]))
    for m in q["peek"]:
        print("               e.g. %s -> %s" % (m["subject"], m["body"]["target"][:70]))
        print("               because %s" % m["body"]["reason"][:110])'
