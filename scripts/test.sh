#!/usr/bin/env bash
# The whole test suite: unit, integration, end-to-end (the real binary over HTTP) and the
# publishing tests against a real AMQP 1.0 broker, then the shared corpus check. Run from a
# fresh clone; scripts/ensure-broker.sh makes the broker available. Benchmarks are not tests:
# they print numbers (scripts/bench.sh) and never run here.
set -euo pipefail
cd "$(dirname "$0")/.."
export INSTA_UPDATE="${INSTA_UPDATE:-no}"

scripts/ensure-broker.sh
python3 -c 'import proton' 2> /dev/null || python3 -m pip install --quiet python-qpid-proton
cargo test --locked
if [ -x ../shared/tools/check-corpus ]; then
  # The debug binary `cargo test` just built: the corpus checks behaviour, not speed.
  ../shared/tools/check-corpus target/debug/defender-responder tests/fixtures/alerts
fi
