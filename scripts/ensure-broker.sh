#!/usr/bin/env bash
# Makes a real AMQP 1.0 broker available on 127.0.0.1:5672 for the publishing tests:
# RabbitMQ (guest/guest) with its rabbitmq_amqp1_0 plugin, installed from Debian's packages
# and started when missing. Idempotent; needs root when it has to install or start anything.
set -euo pipefail

amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

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
echo "ensure-broker: RabbitMQ $(rabbitmqctl version 2>/dev/null) with AMQP 1.0 on 127.0.0.1:5672"
