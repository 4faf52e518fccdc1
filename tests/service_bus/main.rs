//! Publishing to a real AMQP 1.0 broker (RabbitMQ on 127.0.0.1:5672, made available by
//! scripts/ensure-broker.sh): the publisher, outages, identity, logs and the real binary.
//!
//! Every test takes one lock (`support::serial`): the outage tests stop the broker, so no two
//! tests of this binary overlap, and cargo runs test binaries one after another.

// Test helpers outside #[test] functions panic on purpose when the broker misbehaves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_faults;
mod end_to_end;
mod fault;
mod identity;
mod no_secrets;
mod publisher;
mod support;
