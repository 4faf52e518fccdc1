#!/usr/bin/env bash
# Proves the deployment package starts on a glibc 2.31 userland, as on Functions images based
# on Debian 11: makes a Debian 11 (bullseye) root with debootstrap from Debian's packages (once;
# reused afterwards), unpacks dist/defender-responder.zip into it, starts the packaged binary
# with chroot exactly as host.json says (`serve` on FUNCTIONS_CUSTOMHANDLER_PORT) and checks that
# GET / answers 200. As a control, a binary built with plain `cargo build --release` on this
# machine (target/release/defender-responder, when present) must fail to start there.
#
# Needs root (debootstrap, chroot); installs debootstrap when missing. The first run downloads
# about 40 MB of Debian packages and takes a few minutes; later runs take seconds.
# Usage: scripts/package.sh && sudo scripts/check-old-glibc.sh
#   OLD_GLIBC_ROOT=DIR      where the Debian 11 root lives (default /var/tmp/defender-responder-bullseye)
#   OLD_GLIBC_CONTROL=FILE  the newer-glibc control binary (default target/release/defender-responder)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

root="${OLD_GLIBC_ROOT:-/var/tmp/defender-responder-bullseye}"
zip=dist/defender-responder.zip
app=/opt/defender-responder
handler=""

say() { printf 'check-old-glibc: %s\n' "$*"; }

cleanup() {
  if [ -n "$handler" ]; then
    kill "$handler" 2> /dev/null || true
    wait "$handler" 2> /dev/null || true
  fi
}
trap cleanup EXIT

require() {
  if [ "$(id -u)" -ne 0 ]; then
    say "needs root (debootstrap and chroot): sudo $0"
    exit 1
  fi
  if [ ! -f "$zip" ]; then
    say "$zip is missing: run scripts/package.sh first"
    exit 1
  fi
}

make_root() {
  if [ -x "$root/usr/bin/ldd" ]; then
    return 0
  fi
  if ! command -v debootstrap > /dev/null 2>&1; then
    say "installing debootstrap from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap > /dev/null
  fi
  say "making a Debian 11 root in $root (debootstrap --variant=minbase bullseye; a few minutes, once)"
  rm -rf "$root.partial"
  mkdir -p "$root.partial"
  debootstrap --variant=minbase bullseye "$root.partial" http://deb.debian.org/debian > "$root.log" 2>&1 \
    || { say "debootstrap failed; see $root.log"; exit 1; }
  mv "$root.partial" "$root"
}

check_glibc_of_root() {
  local version
  version=$(chroot "$root" ldd --version)
  version="${version%%$'\n'*}"
  say "root's C library: $version"
  case "$version" in
    *" 2.31"*) ;;
    *) say "expected glibc 2.31 in $root"; exit 1 ;;
  esac
}

# Unpacks the zip as the platform does, keeping the mode bits; prints the executable's path.
unpack() {
  rm -rf "${root:?}$app"
  mkdir -p "$root$app"
  python3 - "$zip" "$root$app" <<'PY'
import json, os, sys, zipfile
zip_path, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as zf:
    for info in zf.infolist():
        target = zf.extract(info, dest)
        os.chmod(target, (info.external_attr >> 16) & 0o777)
host = json.load(open(os.path.join(dest, "host.json")))
print(host["customHandler"]["description"]["defaultExecutablePath"])
PY
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts EXE (a path inside the root) with `serve` and waits for GET / to answer 200.
serve_in_root() {
  local exe="$1" port log="$root/tmp/check-old-glibc.log"
  port=$(free_port)
  chroot "$root" /usr/bin/env -i FUNCTIONS_CUSTOMHANDLER_PORT="$port" \
    RESPONDER_STORE_PATH=/tmp/check-old-glibc.sqlite3 "$exe" serve > "$log" 2>&1 &
  handler=$!
  for _ in $(seq 1 400); do
    if python3 -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:$port/', timeout=2).status != 200)" 2> /dev/null; then
      say "GET http://127.0.0.1:$port/ -> 200 from $exe inside the Debian 11 root"
      cleanup
      handler=""
      return 0
    fi
    kill -0 "$handler" 2> /dev/null || break
    sleep 0.05
  done
  cleanup
  handler=""
  say "$exe did not answer GET / inside the Debian 11 root:"
  sed 's/^/  /' "$log"
  return 1
}

# The control: a binary linked on this machine's newer glibc must not start in the old root,
# or this check proves nothing.
control() {
  local native="${OLD_GLIBC_CONTROL:-target/release/defender-responder}"
  if [ ! -x "$native" ]; then
    say "control skipped: no $native (cargo build --release) to show a newer-glibc build failing"
    return 0
  fi
  local needs
  needs=$(objdump -p "$native" 2> /dev/null | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sort -uV | tail -n 1 || true)
  cp "$native" "$root/tmp/native-build"
  if chroot "$root" /tmp/native-build --version > "$root/tmp/native.log" 2>&1; then
    say "control: $native (needs ${needs:-?}) started in the old root too; nothing to prove there"
  else
    say "control: $native (needs ${needs:-?}) fails there as expected: $(head -n 1 "$root/tmp/native.log")"
  fi
  rm -f "$root/tmp/native-build"
}

main() {
  require
  make_root
  check_glibc_of_root
  local exe
  exe=$(unpack)
  say "packaged binary: $app/$exe ($(objdump -p "$root$app/$exe" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sort -uV | tail -n 1) at most)"
  chroot "$root" "$app/$exe" --version
  serve_in_root "$app/$exe"
  control
  say "OK"
}

main "$@"
