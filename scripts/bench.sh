#!/usr/bin/env bash
# The benchmark suite in one command: builds, prints the full-path table, then criterion's decode/plan micro-benchmarks and the callgrind instruction check.
#
# Knobs: BENCH_SECONDS (per run, default 3), BENCH_ALERTS (default 400), BENCH_CONCURRENCY
# (default 16), BENCH_STORE_DIR (default the temp folder), BENCH_JOBS (build jobs, default 1),
# BENCH_MICRO=0 / BENCH_INSTRUCTIONS=0 / BENCH_WORKERS=0 to skip parts, ServiceBusConnection
# (defaults to the local RabbitMQ when it speaks AMQP 1.0 on 127.0.0.1:5672; BENCH_BROKER=0 to skip
# it). The worker benchmark's knobs: BENCH_WORKER_TASKS (1000), BENCH_WORKER_SCALE (1: ARM's
# real write bucket, ~3 minutes; 10 runs the same shape ten times faster).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== machine: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
echo "== $(rustc --version)"
cargo bench -j "${BENCH_JOBS:-1}" --no-run --bench full_path --bench decode_plan --bench instructions --bench workers 2>&1 | grep -v '^ *Executable' || true

# The broker rows need AMQP 1.0, not just a listener: RabbitMQ without its rabbitmq_amqp1_0 plugin
# answers the 1.0 header with its 0-9-1 one, and the server never gets ready against it.
amqp10_header_reply() {
    timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\x03\x01\x00\x00" >&3 && head -c 8 <&3' 2>/dev/null \
        | od -An -tx1 | tr -d ' \n'
}
if [ "${BENCH_BROKER:-1}" = 1 ] && [ -z "${ServiceBusConnection:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    if [ "$(amqp10_header_reply)" = 414d515003010000 ]; then
        export ServiceBusConnection="amqp://guest:guest@127.0.0.1:5672"
    else
        echo "== broker rows skipped: 127.0.0.1:5672 does not speak AMQP 1.0 (RabbitMQ: sudo scripts/ensure-broker.sh enables its plugin and declares the queues)"
    fi
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
