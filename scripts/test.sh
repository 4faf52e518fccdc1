#!/usr/bin/env bash
# The whole test suite, for any user: unit, integration and end-to-end tests (the real binary
# over HTTP), then the suites that need a local service (the publishing tests against a real
# AMQP 1.0 broker), then the shared corpus check. Benchmarks are not tests: they print numbers
# (scripts/bench.sh) and never run here.
#
# A suite whose service is missing is reported as SKIPPED, with the reason and how to get the
# service, never as passed; the closing lines list every skip. As root, missing services are
# installed and started (scripts/ensure-broker.sh). Exit status: non-zero when a test fails or
# a required service is missing.
#
# Environment:
#   TEST_REQUIRE="rabbitmq azurite python-venv"   services whose absence fails the run instead of skipping (CI)
#   CHECK_CORPUS=PATH         the corpus checker (default: ../shared/tools/check-corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
export INSTA_UPDATE="${INSTA_UPDATE:-no}"
# Debian keeps rabbitmqctl and rabbitmq-server in /usr/sbin, off a normal user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

skips=()        # "suite|tests|reason"
missing_required=0

note() { printf 'test.sh: %s\n' "$*"; }

# skip SUITE COUNT SERVICE REASON: records a suite (or part of one) that did not run.
skip() {
  local suite="$1" count="$2" service="$3" reason="$4"
  skips+=("$suite|$count|$reason")
  printf 'SKIPPED: %s: %s test(s): %s\n' "$suite" "$count" "$reason"
  case " ${TEST_REQUIRE:-} " in
    *" $service "*)
      printf 'test.sh: %s is required (TEST_REQUIRE) but missing\n' "$service" >&2
      missing_required=1
      ;;
  esac
}

# How many tests `cargo test ARGS -- --list` finds, optionally only those whose names contain
# one of the given substrings (as `--skip` matches them).
count_tests() {
  local target="$1"
  shift
  cargo test --locked --quiet --test "$target" -- --list 2> /dev/null \
    | python3 -c '
import sys
patterns = sys.argv[1:]
names = [l.split(": test")[0] for l in sys.stdin if l.rstrip().endswith(": test")]
print(sum(1 for n in names if not patterns or any(p in n for p in patterns)))' "$@"
}

# ---- What every suite needs --------------------------------------------------------------------

require_toolchain() {
  local missing=0
  if ! command -v cargo > /dev/null 2>&1; then
    note "missing: cargo. Install Rust stable (rustup from https://rustup.rs), or put a Rust >= 1.88 toolchain's bin/ on PATH."
    missing=1
  fi
  if ! command -v python3 > /dev/null 2>&1; then
    note "missing: python3 (Debian: apt-get install python3)."
    missing=1
  fi
  [ "$missing" -eq 0 ] || exit 1
}

# ---- Services: one function each. It succeeds when the service is usable and otherwise sets
# `why` to what is missing and how to get it. (Another local service, e.g. Azurite or the
# Service Bus emulator, gets its own service_* function here and a suite_* function below.)

amqp_up() { (exec 3<> /dev/tcp/127.0.0.1/5672) 2> /dev/null; }

# RabbitMQ with AMQP 1.0 on 127.0.0.1:5672 (guest/guest). As root, installed and started when
# missing. Sets broker_control=yes when this user may stop and start it (rabbitmqctl).
service_rabbitmq() {
  broker_control=no
  if [ "$(id -u)" -eq 0 ]; then
    if ! scripts/ensure-broker.sh; then
      why="scripts/ensure-broker.sh could not install or start RabbitMQ (output above)"
      return 1
    fi
  elif ! amqp_up; then
    why="no AMQP 1.0 broker on 127.0.0.1:5672; start one with: sudo scripts/ensure-broker.sh (installs RabbitMQ from Debian's packages and enables rabbitmq_amqp1_0), or run this script as root"
    return 1
  fi
  if rabbitmqctl status > /dev/null 2>&1; then broker_control=yes; fi
  return 0
}

# The independent AMQP client the broker tests read messages back with (python-qpid-proton).
service_proton() {
  python3 -c 'import proton' 2> /dev/null && return 0
  note "installing python-qpid-proton (the tests' independent AMQP client)"
  local args=(--quiet)
  [ "$(id -u)" -eq 0 ] || args+=(--user)
  python3 -m pip install "${args[@]}" python-qpid-proton > /dev/null 2>&1 \
    || python3 -m pip install "${args[@]}" --break-system-packages python-qpid-proton > /dev/null 2>&1 \
    || true
  python3 -c 'import proton' 2> /dev/null && return 0
  why="python-qpid-proton is missing and pip could not install it: python3 -m pip install --user python-qpid-proton (Debian: apt-get install python3-qpid-proton)"
  return 1
}

# Azurite (the Azure Storage emulator, from npm) over HTTPS with bearer tokens, for the journal's
# Blob store. Installed into the user's cache by scripts/ensure-azurite.sh; needs npm and openssl.
service_azurite() {
  local tool
  for tool in npm openssl; do
    if ! command -v "$tool" > /dev/null 2>&1; then
      why="$tool is missing, which scripts/ensure-azurite.sh needs to install and serve Azurite (Debian: apt-get install npm openssl)"
      return 1
    fi
  done
  if ! scripts/ensure-azurite.sh > /dev/null; then
    why="scripts/ensure-azurite.sh could not install or start Azurite (output above)"
    return 1
  fi
}

# The reference Standard Webhooks verifier (PyPI standardwebhooks) the webhook tests' receiver uses.
service_standardwebhooks() {
  python3 -c 'import standardwebhooks' 2> /dev/null && return 0
  note "installing standardwebhooks (the webhook tests' reference signature verifier)"
  local args=(--quiet)
  [ "$(id -u)" -eq 0 ] || args+=(--user)
  python3 -m pip install "${args[@]}" standardwebhooks > /dev/null 2>&1 \
    || python3 -m pip install "${args[@]}" --break-system-packages standardwebhooks > /dev/null 2>&1 \
    || true
  python3 -c 'import standardwebhooks' 2> /dev/null && return 0
  why="standardwebhooks is missing and pip could not install it: python3 -m pip install --user standardwebhooks"
  return 1
}

# ---- Suites ------------------------------------------------------------------------------------

# Test targets that need a service, each run by its own suite below.
service_targets=(service_bus workers)

# Unit tests beside the code, the integration suites and the doc tests: need nothing else.
suite_local() {
  local args=() target
  for target in $(cargo metadata --locked --no-deps --format-version 1 | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    if package["name"] != "defender-responder":
        continue  # the simulator tests run in suite_sim
    for target in package["targets"]:
        if "test" in target["kind"]:
            print(target["name"])'); do
    case " ${service_targets[*]} " in
      *" $target "*) ;;
      *) args+=(--test "$target") ;;
    esac
  done
  cargo test --locked --lib --bins --examples "${args[@]}"
  cargo test --locked --doc
}

# Tests that stop and restart the broker or delete queues with rabbitmqctl, which Debian lets
# only root and the rabbitmq user run (substrings of test names, as `--skip` takes them).
broker_control_tests=(fault:: end_to_end::a_broker_outage publisher::rabbitmq_drops_messages_for_a_missing_queue)

# The publishing tests against the real broker (tests/service_bus).
suite_service_bus() {
  local why=""
  if ! service_rabbitmq || ! service_proton; then
    skip service_bus "$(count_tests service_bus)" rabbitmq "$why"
    return 0
  fi
  if [ "$broker_control" = yes ]; then
    cargo test --locked --test service_bus
    return 0
  fi
  local args=() name
  for name in "${broker_control_tests[@]}"; do args+=(--skip "$name"); done
  cargo test --locked --test service_bus -- "${args[@]}"
  skip "service_bus (broker outage and queue deletion)" "$(count_tests service_bus "${broker_control_tests[@]}")" rabbitmq \
    "these tests stop the broker with rabbitmqctl, which only root and the rabbitmq user may run: run scripts/test.sh as root (sudo) to include them"
}

# The journal against real Azurite, the signed webhook against a receiver that verifies with the
# reference standardwebhooks package, and the decision endpoint (tests/workers).
suite_workers() {
  local why=""
  if ! service_azurite || ! service_standardwebhooks; then
    skip workers "$(count_tests workers)" azurite "$why"
    return 0
  fi
  cargo test --locked --test workers
}

# The Azure simulator's own tests, then its conformance suite: the official Azure SDK for Python
# clients (pinned in sim/tests/requirements.txt, installed into a virtualenv) drive it.
suite_sim() {
  cargo test --locked -p azure-sim
  if ! python3 -c 'import venv, ensurepip' 2> /dev/null; then
    skip "sim conformance (official Azure SDK for Python)" "$(grep -c '^def test_\|^    def test_' sim/tests/conformance/*.py | awk -F: '{s+=$2} END {print s}')" python-venv \
      "python3 cannot make a virtualenv (Debian: apt-get install python3-venv)"
    return 0
  fi
  sim/tests/run.sh
}

# The shared corpus checker against the debug binary `cargo test` just built (the corpus checks
# behaviour, not speed).
suite_corpus() {
  local checker="${CHECK_CORPUS:-../shared/tools/check-corpus}"
  if [ ! -x "$checker" ]; then
    skip corpus 1 corpus "the corpus checker $checker is not there (set CHECK_CORPUS=PATH to run it)"
    return 0
  fi
  "$checker" "$(scripts/cargo-target-dir)/debug/defender-responder" tests/fixtures/alerts
}

main() {
  require_toolchain
  suite_local
  suite_service_bus
  suite_workers
  suite_sim
  suite_corpus
  echo
  if [ "${#skips[@]}" -eq 0 ]; then
    note "every suite ran; nothing skipped"
  else
    note "${#skips[@]} part(s) SKIPPED (not passed):"
    local entry
    for entry in "${skips[@]}"; do
      IFS='|' read -r suite count reason <<< "$entry"
      printf '  %s (%s test(s)): %s\n' "$suite" "$count" "$reason"
    done
  fi
  [ "$missing_required" -eq 0 ] || exit 1
}

main "$@"
