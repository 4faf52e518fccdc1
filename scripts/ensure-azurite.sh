#!/usr/bin/env bash
# Makes a real Azurite (the Azure Storage emulator, from npm) available for the journal tests:
# installed under the user's cache when missing, serving HTTPS with a self-signed certificate
# (bearer tokens are only sent over HTTPS) and accepting Entra-style bearer tokens
# (`--oauth basic`), so the tests use the same identity path as a deployed function app.
# Idempotent: an Azurite already started by this script is reused. Prints two lines the tests
# read: `AZURITE_BLOB_ENDPOINT=<url>` and `AZURITE_CERT=<pem path>`.
#
# Settings: RESPONDER_AZURITE_HOME (install, data and certificate directory),
# RESPONDER_AZURITE_BLOB_PORT (default 10100, away from Azurite's default 10000 so another
# Azurite on this machine is never mistaken for this one).
set -euo pipefail

home="${RESPONDER_AZURITE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/defender-responder/azurite}"
port="${RESPONDER_AZURITE_BLOB_PORT:-10100}"
mkdir -p "$home/data"
cd "$home"

log() { echo "ensure-azurite: $*" >&2; }
blob_up() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if [ ! -x node_modules/.bin/azurite ]; then
  command -v npm > /dev/null || { log "npm is needed to install Azurite"; exit 1; }
  log "installing azurite from npm into $home"
  npm install --no-audit --no-fund --loglevel=error azurite > /dev/null
fi
if [ ! -s cert.pem ] || [ ! -s key.pem ]; then
  log "making a self-signed certificate for 127.0.0.1 and localhost"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout key.pem -out cert.pem 2> /dev/null
fi

if ! blob_up; then
  log "starting Azurite (blob on 127.0.0.1:$port, HTTPS, OAuth basic)"
  # setsid: Azurite outlives the calling test process and its process group.
  setsid node_modules/.bin/azurite-blob --silent --skipApiVersionCheck --loose \
    --blobHost 127.0.0.1 --blobPort "$port" --location "$home/data" \
    --cert "$home/cert.pem" --key "$home/key.pem" --oauth basic \
    > "$home/azurite.log" 2>&1 < /dev/null &
  echo $! > "$home/azurite.pid"
  for _ in $(seq 1 100); do blob_up && break; sleep 0.2; done
  blob_up || { log "Azurite did not start; see $home/azurite.log"; cat "$home/azurite.log" >&2; exit 1; }
fi
echo "AZURITE_BLOB_ENDPOINT=https://127.0.0.1:$port/devstoreaccount1"
echo "AZURITE_CERT=$home/cert.pem"
