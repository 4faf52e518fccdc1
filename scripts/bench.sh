#!/usr/bin/env bash
# The benchmark suite in one command: builds, prints the full-path table, then criterion's decode/plan micro-benchmarks and the callgrind instruction check.
#
# Knobs: BENCH_SECONDS (per run, default 3), BENCH_ALERTS (default 400), BENCH_CONCURRENCY
# (default 16), BENCH_STORE_DIR (default the temp folder), BENCH_JOBS (build jobs, default 1),
# BENCH_MICRO=0 / BENCH_INSTRUCTIONS=0 / BENCH_WORKERS=0 to skip parts, ServiceBusConnection
# (defaults to the local RabbitMQ when one listens on 127.0.0.1:5672; BENCH_BROKER=0 to skip
# it). The worker benchmark's knobs: BENCH_WORKER_TASKS (1000), BENCH_WORKER_SCALE (1: ARM's
# real write bucket, ~3 minutes; 10 runs the same shape ten times faster).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== machine: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
echo "== $(rustc --version)"
cargo bench -j "${BENCH_JOBS:-1}" --no-run --bench full_path --bench decode_plan --bench instructions --bench workers 2>&1 | grep -v '^ *Executable' || true

if [ "${BENCH_BROKER:-1}" = 1 ] && [ -z "${ServiceBusConnection:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    export ServiceBusConnection="amqp://guest:guest@127.0.0.1:5672"
fi
echo "== load before: $(uptime)"
cargo bench --bench full_path 2>/dev/null
echo "== load after: $(uptime)"

if [ "${BENCH_MICRO:-1}" = 1 ]; then
    echo "== criterion micro-benchmarks (decode, plan per alert shape)"
    cargo bench --bench decode_plan 2>/dev/null | grep -E '^[a-z_]+/|time:|thrpt:' || true
fi
if [ "${BENCH_INSTRUCTIONS:-1}" = 1 ]; then
    scripts/instructions.sh || true
fi
if [ "${BENCH_WORKERS:-1}" = 1 ]; then
    echo "== workers (responder CPU per task against the simulator, 1,000 tasks at the ARM write budget)"
    cargo bench --bench workers 2>/dev/null
fi
