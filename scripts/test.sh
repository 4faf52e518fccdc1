#!/usr/bin/env bash
# The whole test suite: unit, integration, end-to-end (the real binary over HTTP) and the
# publishing tests against a real AMQP 1.0 broker, then the corpus check with the release
# binary. Run from a fresh clone; scripts/ensure-broker.sh makes the broker available.
set -euo pipefail
cd "$(dirname "$0")/.."
export INSTA_UPDATE="${INSTA_UPDATE:-no}"

scripts/ensure-broker.sh
python3 -c 'import proton' 2> /dev/null || python3 -m pip install --quiet python-qpid-proton
cargo test --locked --all-targets
if [ -x ../shared/tools/check-corpus ]; then
  cargo build --release --locked --quiet
  ../shared/tools/check-corpus target/release/defender-responder tests/fixtures/alerts
fi
