#!/usr/bin/env bash
# Makes a real AMQP 1.0 broker available on 127.0.0.1:5672 for the publishing tests:
# RabbitMQ (guest/guest) with its rabbitmq_amqp1_0 plugin, installed from Debian's packages
# and started when missing, and the responder's three durable queues declared (the handler
# addresses them as /amq/queue/<name>, and RabbitMQ silently drops messages sent there when the
# queue does not exist). Queue names: RESPONDER_QUEUE_* or the defaults, plus any names given as
# arguments. Idempotent; needs root (it installs packages and manages the broker with
# rabbitmqctl, which Debian lets only root run): sudo scripts/ensure-broker.sh
set -euo pipefail
# Debian keeps rabbitmqctl and rabbitmq-server in /usr/sbin, off a normal user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if [ "$(id -u)" -ne 0 ]; then
  if amqp_up; then
    echo "ensure-broker: an AMQP broker answers on 127.0.0.1:5672; declaring the queues needs root: sudo $0" >&2
  else
    echo "ensure-broker: no broker on 127.0.0.1:5672; installing and starting RabbitMQ needs root: sudo $0" >&2
  fi
  exit 1
fi

if ! command -v rabbitmq-server > /dev/null 2>&1; then
  echo "ensure-broker: installing rabbitmq-server from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq rabbitmq-server > /dev/null
fi
if ! rabbitmqctl status > /dev/null 2>&1; then
  echo "ensure-broker: starting RabbitMQ"
  rabbitmq-server -detached
  for _ in $(seq 1 120); do rabbitmqctl status > /dev/null 2>&1 && break; sleep 0.5; done
fi
if ! rabbitmq-plugins list -e 2>/dev/null | grep -q 'rabbitmq_amqp1_0'; then
  echo "ensure-broker: enabling rabbitmq_amqp1_0"
  rabbitmq-plugins enable rabbitmq_amqp1_0 > /dev/null
fi
rabbitmqctl await_startup > /dev/null 2>&1 || true
for _ in $(seq 1 60); do amqp_up && break; sleep 0.5; done
amqp_up || { echo "ensure-broker: nothing listens on 127.0.0.1:5672" >&2; exit 1; }

# Declare durable queues (an existing queue is left as it is).
declare_queue() {
  local name="$1"
  case "$name" in
    *[!A-Za-z0-9._/-]*|"") echo "ensure-broker: bad queue name: $name" >&2; exit 1 ;;
  esac
  rabbitmqctl eval "element(1, rabbit_amqqueue:declare(rabbit_misc:r(<<\"/\">>, queue, <<\"$name\">>), true, false, [], none, <<\"ensure-broker\">>))." > /dev/null \
    || { echo "ensure-broker: cannot declare queue $name" >&2; exit 1; }
}
queues=("${RESPONDER_QUEUE_NOTIFICATION:-notification}" "${RESPONDER_QUEUE_ISOLATION:-isolation}" "${RESPONDER_QUEUE_ROTATION:-rotation}" "$@")
for queue in "${queues[@]}"; do declare_queue "$queue"; done
echo "ensure-broker: durable queues: ${queues[*]}"
echo "ensure-broker: RabbitMQ $(rabbitmqctl version 2>/dev/null) with AMQP 1.0 on 127.0.0.1:5672"
