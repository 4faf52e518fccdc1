#!/usr/bin/env bash
# The main job on the embedded default, no Azure account needed: builds the handler, starts it
# as the Functions host would, delivers sample alerts over HTTP in both host forms and as an
# Event Grid webhook batch, redelivers the batch (every event is recognised as a duplicate),
# then follows the loop: the in-process workers deliver notifications to a local receiver that
# verifies their Standard Webhooks signatures, a decision is approved through its signed link
# (POST), the approved task is recorded (done, or not_automated where no executor is
# configured), and the journal shows every task's history. Then the same responder acts on
# Azure, played by the project's simulator: a Key Vault alert rotates the secret it exposed,
# closes the vault's firewall after the rotation, disables the old versions once a shortened
# grace window (15 s) has passed, and `undo` opens the firewall to exactly its prior state.
#
# One function per step; main() at the bottom lists them in order. Needs Rust (cargo) and
# python3. Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The demo runs on the embedded default: a Service Bus setting inherited from the shell (as the
# test and bench scripts set for a local broker) would send the tasks to that broker, where no
# in-process worker takes them, and the demo would wait for a decision request that never comes.
for name in $(compgen -e | grep '^ServiceBusConnection' || true); do
  echo "demo: ignoring $name from the environment (the demo uses the embedded default)"
  unset "$name"
done

# DEMO_BINARY / DEMO_SIM_BINARY: already built binaries to use instead (skip the release build).
# Otherwise both are found where cargo puts them (locate_binaries).
binary=""
alerts=tests/fixtures/alerts
work=""
handler=""
url=""
simulator=""
sim_binary=""
receiver=""
receiver_url=""
webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
approved_task=""
azure_alert="2575094087140347022_83F891C3-F3FA-4DB4-AACA-DCF4DC5EF7A9"
firewall_task=""
sim_http=""

say() { printf '\n== %s\n' "$*"; }

cleanup() {
  if [ -n "$receiver" ]; then
    kill "$receiver" 2> /dev/null || true
    wait "$receiver" 2> /dev/null || true
  fi
  if [ -n "$handler" ]; then
    kill "$handler" 2> /dev/null || true
    wait "$handler" 2> /dev/null || true
  fi
  if [ -n "$simulator" ]; then
    kill "$simulator" 2> /dev/null || true
    wait "$simulator" 2> /dev/null || true
  fi
  if [ -n "$work" ]; then rm -rf "$work"; fi
}

require() {
  local missing=()
  command -v cargo > /dev/null 2>&1 || missing+=("cargo (Rust stable: https://rustup.rs, or any Rust >= 1.88 on PATH)")
  command -v python3 > /dev/null 2>&1 || missing+=("python3")
  if command -v python3 > /dev/null 2>&1 && ! python3 -c 'import standardwebhooks' 2> /dev/null; then
    # The local receiver verifies signatures with the reference package: install it for this
    # user when missing (into the user's site-packages unless this is root).
    say "Installing the standardwebhooks Python package (the receiver's signature verifier)"
    local args=(--quiet)
    [ "$(id -u)" -eq 0 ] || args+=(--user)
    python3 -m pip install "${args[@]}" standardwebhooks > /dev/null 2>&1 \
      || python3 -m pip install "${args[@]}" --break-system-packages standardwebhooks > /dev/null 2>&1 \
      || true
    python3 -c 'import standardwebhooks' 2> /dev/null \
      || missing+=("the standardwebhooks Python package (python3 -m pip install --user standardwebhooks)")
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    printf 'demo: missing: %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

# cargo's target directory is not always target/: CARGO_TARGET_DIR or a config's
# build.target-dir moves it, and the binaries with it.
locate_binaries() {
  local target_dir=""
  if [ -z "${DEMO_BINARY:-}" ] || [ -z "${DEMO_SIM_BINARY:-}" ]; then
    target_dir=$(scripts/cargo-target-dir)
  fi
  binary=${DEMO_BINARY:-$target_dir/release/defender-responder}
  sim_binary=${DEMO_SIM_BINARY:-$target_dir/release/azure-sim}
}

build() {
  if [ -n "${DEMO_BINARY:-}" ]; then return 0; fi
  if [ -x "$binary" ]; then
    say "Building the release binary (cargo build --release; seconds when nothing changed)"
  else
    say "Building the release binary (cargo build --release)"
    echo "   The first build downloads and compiles about 230 crates with optimisations (the"
    echo "   AMQP and Azure clients, SQLite, the HTTP stack): about 6 minutes on 2 cores, over 20"
    echo "   when other work keeps them busy. Later runs reuse cargo's target directory and take seconds."
    echo "   cargo's progress follows."
  fi
  cargo build --release --locked --bin defender-responder
  if [ -z "${DEMO_SIM_BINARY:-}" ]; then
    cargo build --release --locked -p azure-sim --bin azure-sim
  fi
}

# The local Azure (ARM, Key Vault, Graph, Defender for Endpoint, managed identity) that the
# executors and their tests talk to, seeded with sim/seeds/example.json; prints how long it
# took from start to its ready line.
start_simulator() {
  say "Starting the Azure simulator (azure-sim, seeded from sim/seeds/example.json)"
  [ -n "$work" ] || work=$(mktemp -d)
  local ready="$work/azure-sim.ready" started elapsed
  started=$(date +%s%N)
  "$sim_binary" --port 0 --seed sim/seeds/example.json --ready-file "$ready" \
    --cert-out "$work/azure-sim.pem" > "$work/azure-sim.log" 2>&1 &
  simulator=$!
  for _ in $(seq 1 400); do
    # The ready line is printed once the ready file is complete.
    grep -q '^azure-sim ready ' "$work/azure-sim.log" 2> /dev/null && break
    kill -0 "$simulator" 2> /dev/null || { cat "$work/azure-sim.log" >&2; exit 1; }
    sleep 0.005
  done
  grep -q '^azure-sim ready ' "$work/azure-sim.log" || { echo "demo: azure-sim did not become ready" >&2; cat "$work/azure-sim.log" >&2; exit 1; }
  sim_http=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["http"])' "$ready")
  elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
  python3 - "$ready" "$elapsed" <<'PY'
import json, sys
ready = json.load(open(sys.argv[1]))
urls = {k: v for k, v in ready.items() if isinstance(v, str) and v.startswith("http")}
print(f"   ready in {sys.argv[2]} ms (start to ready line, this script's own measure)")
for name, value in sorted(urls.items())[:4]:
    print(f"   {name}: {value}")
PY
}

# What a Teams channel receives for a Key Vault alert: the Adaptive Card, rendered offline.
show_rendered_notification() {
  say "A notification as Teams shows it (defender-responder notify --render ... --channel teams)"
  "$binary" notify --render "$alerts/keyvault-KV_SuspiciousIPAccess-egrest.json" --channel teams \
    > "$work/card.json"
  python3 - "$work/card.json" <<'PY'
import json, sys
card = json.load(open(sys.argv[1]))["attachments"][0]["content"]
print(f"   Adaptive Card {card['version']}: {len(card['body'])} body elements, buttons:",
      ", ".join(a["title"] for a in card.get("actions", [])) or "none")
for block in card["body"][:3]:
    if block.get("type") == "TextBlock":
        print("   " + block["text"][:100])
PY
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A local webhook receiver that verifies every delivery with the reference standardwebhooks
# package and serves what it received at GET /log.
start_receiver() {
  [ -n "$work" ] || work=$(mktemp -d)
  # Created here: the background job opens its redirection only once it is scheduled.
  : > "$work/receiver.out"
  WEBHOOK_SECRET="$webhook_secret" python3 tests/workers/webhook_receiver.py > "$work/receiver.out" 2> "$work/receiver.err" &
  receiver=$!
  local port=""
  for _ in $(seq 1 400); do
    port=$(sed -n 's/^LISTENING //p' "$work/receiver.out")
    if [ -n "$port" ]; then break; fi
    kill -0 "$receiver" 2> /dev/null || break
    sleep 0.025
  done
  if [ -z "$port" ]; then
    echo "demo: the webhook receiver did not start:" >&2
    cat "$work/receiver.err" >&2
    exit 1
  fi
  receiver_url="http://127.0.0.1:$port/hook"
  say "Webhook receiver listening at $receiver_url (verifies Standard Webhooks signatures)"
}

# Starts `serve` as the Functions host does: FUNCTIONS_CUSTOMHANDLER_PORT, then polls until the
# port answers. A port taken between choosing and binding gets another try.
start_handler() {
  start_handler_with_store "$work/store.sqlite3"
}

start_handler_with_store() {
  export RESPONDER_STORE_PATH="$1"
  export RESPONDER_WEBHOOK_URL="$receiver_url" RESPONDER_WEBHOOK_SECRET="$webhook_secret"
  export RESPONDER_APPROVAL_KEY="demo-decision-link-key-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  export RESPONDER_WORKER_POLL_MS=100
  local attempt port
  for attempt in 1 2 3; do
    port=$(free_port)
    export RESPONDER_DECISION_URL="http://127.0.0.1:$port/api/decide"
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

# Polls the receiver until a decision request with its signed links has arrived.
await_decision_request() {
  say "The in-process workers record each pending change and send the decision request with signed links"
  local approve=""
  for _ in $(seq 1 400); do
    approve=$(curl -fsS "${receiver_url%/hook}/log" | python3 -c '
import json, sys
for record in json.load(sys.stdin):
    body = record.get("body") or {}
    for link in (body.get("data") or {}).get("decisions") or []:
        if record.get("verified") and link["decision"] == "approve":
            print(link["url"]); sys.exit(0)
')
    if [ -n "$approve" ]; then break; fi
    sleep 0.05
  done
  if [ -z "$approve" ]; then
    echo "demo: no decision request reached the receiver; handler log:" >&2
    tail -20 "$work/handler.log" >&2
    exit 1
  fi
  echo "$approve" > "$work/approve.url"
  echo "   approve link: ${approve%%&sig=*}&sig=..."
}

# GET shows the page and decides nothing; the form's POST decides.
approve_through_link() {
  say "Approving the first pending task through its link (GET shows the change, POST decides)"
  local approve query status
  approve=$(cat "$work/approve.url")
  query=${approve#*\?}
  approved_task=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.parse_qs(sys.argv[1])["m"][0])' "$query")
  status=$(curl -sS -o /dev/null -w '%{http_code}' "$approve")
  echo "   GET  -> HTTP $status (the page; nothing decided)"
  status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST --data "$query" "$url/api/decide")
  echo "   POST -> HTTP $status (approved: task $approved_task)"
  [ "$status" = 200 ] || { echo "demo: the decision was refused" >&2; exit 1; }
}

# Polls the journal (shared with the running handler) until the approved task is settled.
await_outcome() {
  say "The approved copy is queued under <id>-approved; a worker carries it out"
  local state=""
  for _ in $(seq 1 400); do
    state=$("$binary" journal --task "$approved_task" --format json 2> /dev/null \
      | python3 -c 'import json, sys; v = json.load(sys.stdin); v = v[0] if isinstance(v, list) else v; print(v.get("state", ""))' 2> /dev/null || true)
    case "$state" in done | not_automated | failed) break ;; esac
    sleep 0.05
  done
  echo "   task $approved_task is $state"
  case "$state" in done | not_automated) ;; *)
    echo "demo: the approved task was not carried out; handler log:" >&2
    tail -20 "$work/handler.log" >&2
    exit 1 ;;
  esac
}

show_notifications() {
  say "What the webhook receiver got (every delivery's signature verified)"
  curl -fsS "${receiver_url%/hook}/log" | python3 -c '
import collections, json, sys
records = json.load(sys.stdin)
kinds = collections.Counter(r.get("type") for r in records)
verified = all(r.get("verified") for r in records)
print(f"   {len(records)} deliveries, all verified: {verified}")
for kind, count in sorted(kinds.items()):
    print(f"   {count:>3}  {kind}")
'
}

show_journal() {
  say "The journal of the approved task's alert (defender-responder journal --alert ... --format table)"
  local alert
  alert=$("$binary" journal --task "$approved_task" --format json \
    | python3 -c 'import json, sys; v = json.load(sys.stdin); v = v[0] if isinstance(v, list) else v; print(v["system_alert_id"])')
  "$binary" journal --alert "$alert" --format table
}

# ---- On Azure (the simulator) -------------------------------------------------------------

# A policy that acts at once on a Key Vault alert (the defaults ask for a decision first).
write_azure_policy() {
  cat > "$work/azure-policy.json" <<'JSON'
{
  "dry_run": false,
  "notify_recipients": ["secops@contoso.com"],
  "automation": [
    {"action": "enable_key_vault_firewall", "mode": "auto"},
    {"action": "rotate_secret", "mode": "auto"},
    {"action": "disable_secret", "mode": "auto"},
    {"action": "restrict_principal", "mode": "notify_only"}
  ],
  "default_mode": "approval"
}
JSON
}

# The app settings that point the responder at the simulator, as a deployment points it at
# Azure: endpoints, the managed-identity token endpoint, the vaults' data-plane addresses, the
# simulator's certificate; and a grace window of 15 seconds instead of a day.
azure_settings() {
  local ready="$work/azure-sim.ready"
  python3 - "$ready" "$work/azure-sim.pem" <<'PY'
import json, sys
ready = json.load(open(sys.argv[1]))
vaults = ",".join(f"{name}={url}" for name, url in sorted(ready["vaults"].items()))
settings = {
    "RESPONDER_ARM_ENDPOINT": ready["https"],
    "RESPONDER_GRAPH_ENDPOINT": ready["https"] + "/v1.0",
    "RESPONDER_MDE_ENDPOINT": ready["https"] + "/api",
    "RESPONDER_AZURE_EXTRA_ROOT_CERTIFICATE": sys.argv[2],
    "RESPONDER_IDENTITY": "managed_identity",
    "RESPONDER_IDENTITY_ENDPOINT": ready["http"] + "/msi/token",
    "IDENTITY_HEADER": ready["identityHeader"],
    "RESPONDER_KEY_VAULT_ENDPOINTS": vaults,
}
for name, value in settings.items():
    print(f"export {name}='{value}'")
PY
}

start_azure_handler() {
  say "Starting the handler against the Azure simulator (live, not a dry run; grace window 15 s)"
  write_azure_policy
  eval "$(azure_settings)"
  export RESPONDER_POLICY_FILE="$work/azure-policy.json"
  export RESPONDER_ROTATION_GRACE_SECONDS=15
  export RESPONDER_SWEEP_INTERVAL_SECONDS=2
  # The responder's own address: the firewall keeps it while the vault's rotation follow-ups
  # (disabling the old versions) are still due.
  export RESPONDER_EGRESS_IP_RANGES=127.0.0.1/32
  mkdir -p "$work/azure"
  local store_dir="$work/azure"
  start_handler_with_store "$store_dir/store.sqlite3"
  echo "   Resource Manager, Graph, Defender for Endpoint: $RESPONDER_ARM_ENDPOINT"
}

# Prints the vault's firewall as the simulator holds it.
show_firewall() {
  curl -fsS "${sim_http}/_sim/state" | python3 -c '
import json, sys
state = json.load(sys.stdin)
vault = next(r for r in state["resources"] if r["id"].lower().endswith("/vaults/kv-contoso-payments"))
acls = vault["properties"].get("networkAcls") or {}
rules = ", ".join(rule["value"] for rule in acls.get("ipRules", [])) or "none"
default, bypass = acls.get("defaultAction", "Allow"), acls.get("bypass", "-")
print(f"   kv-contoso-payments firewall: defaultAction={default}, bypass={bypass}, ip rules: {rules}")
'
}

# Prints the secret's versions (ids and whether enabled; never a value).
show_secret_versions() {
  curl -fsS "${sim_http}/_sim/state" | python3 -c '
import json, sys
state = json.load(sys.stdin)
secret = state["vaults"]["kv-contoso-payments"]["secrets"]["payments-db-password"]
versions = secret if isinstance(secret, list) else secret.get("versions", [])
for v in versions:
    enabled = v.get("enabled", (v.get("attributes") or {}).get("enabled", True))
    tags = v.get("tags") or {}
    marker = "  (written by the responder for " + tags["dr-message-id"] + ")" if "dr-message-id" in tags else ""
    version = v["version"][:12]
    print(f"   payments-db-password/{version}...  enabled={str(enabled).lower()}{marker}")
'
}

deliver_to_azure() {
  say "A Key Vault alert that Defender for Cloud (the simulator) really raised"
  show_firewall
  show_secret_versions
  "$binary" send --url "$url" --as host "tests/fixtures/azure-sim/keyvault-KV_ListGetAnomaly.json" > "$work/azure-replies.txt"
  summarise_replies "$work/azure-replies.txt"
}

# The journal entry (JSON) of the alert's task with this action.
azure_task_field() {
  "$binary" journal --alert "$azure_alert" --format json 2> /dev/null | python3 -c '
import json, sys
action, field = sys.argv[1], sys.argv[2]
for entry in json.load(sys.stdin):
    if entry.get("action") == action:
        print(entry.get(field, "")); break
' "$1" "$2" 2> /dev/null || true
}

await_azure_outcome() {
  say "The workers read the alert back from Defender, rotate the secret, then close the firewall"
  local rotate="" firewall=""
  for _ in $(seq 1 400); do
    rotate=$(azure_task_field rotate_secret state)
    firewall=$(azure_task_field enable_key_vault_firewall state)
    [ "$rotate" = done ] && [ "$firewall" = done ] && break
    sleep 0.05
  done
  echo "   rotate_secret: $rotate; enable_key_vault_firewall: $firewall"
  if [ "$rotate" != done ] || [ "$firewall" != done ]; then
    echo "demo: the containment did not complete; handler log:" >&2
    tail -30 "$work/handler.log" >&2
    exit 1
  fi
  firewall_task=$(azure_task_field enable_key_vault_firewall message_id)
  show_firewall
  show_secret_versions
}

await_grace_window() {
  say "After the grace window, the sweeper disables the versions the attacker read"
  local disabled=""
  for _ in $(seq 1 400); do
    disabled=$(curl -fsS "${sim_http}/_sim/state" | python3 -c '
import json, sys
state = json.load(sys.stdin)
secret = state["vaults"]["kv-contoso-payments"]["secrets"]["payments-db-password"]
versions = secret if isinstance(secret, list) else secret.get("versions", [])
print(sum(1 for v in versions if not v.get("enabled", (v.get("attributes") or {}).get("enabled", True))))
')
    [ "$disabled" -ge 1 ] && break
    sleep 0.1
  done
  if [ "$disabled" -lt 1 ]; then
    echo "demo: the old versions were not disabled after the grace window; handler log:" >&2
    tail -30 "$work/handler.log" >&2
    exit 1
  fi
  show_secret_versions
}

undo_firewall() {
  say "Undo: defender-responder undo $firewall_task (restores the firewall exactly as it was)"
  RUST_LOG=warn "$binary" undo "$firewall_task" --by "demo operator" --format table
  show_firewall
}

main() {
  trap cleanup EXIT
  require
  locate_binaries
  build
  start_simulator
  start_receiver
  start_handler
  deliver
  redeliver
  await_decision_request
  approve_through_link
  await_outcome
  show_notifications
  show_rendered_notification
  stop_handler
  show_queues
  show_journal
  start_azure_handler
  deliver_to_azure
  await_azure_outcome
  await_grace_window
  stop_handler
  undo_firewall
  say "Done. Plan any alert offline: $binary plan --format table $alerts/<file>.json"
}

main "$@"
