//! Broker outage (`rabbitmqctl stop_app` / `start_app`): transient errors while it is down, and
//! the same publisher recovers with nothing lost or doubled.

use std::time::{Duration, Instant};

use defender_responder::adapters::Publisher;
use defender_responder::error::ErrorKind;

use crate::support::*;

#[tokio::test]
async fn an_outage_is_transient_and_the_same_publisher_recovers() {
    let _serial = serial().await;
    let queues = TestQueues::new("fault");
    let publisher = publisher(
        &queues,
        &[
            ("RESPONDER_SB_CONNECT_TIMEOUT_SECONDS", "3"),
            ("RESPONDER_SB_SEND_TIMEOUT_SECONDS", "3"),
        ],
    );
    publisher.publish(&alert_tasks("before")).await.unwrap();

    let mut outage = BrokerOutage::begin();
    let started = Instant::now();
    let err = publisher.publish(&alert_tasks("during")).await.unwrap_err();
    let first = started.elapsed();
    println!("publish while the broker is stopped: {err} after {first:?}");
    assert!(err.kind() == ErrorKind::Transient, "{err}");
    // Bounded by send timeout + connect timeout + send timeout.
    assert!(first < Duration::from_secs(10), "{first:?}");

    // A second call while still down fails too, transiently (no dead link cached).
    let started = Instant::now();
    let err = publisher.publish(&alert_tasks("during")).await.unwrap_err();
    println!(
        "second publish while stopped: {err} after {:?}",
        started.elapsed()
    );
    assert!(err.kind() == ErrorKind::Transient, "{err}");

    outage.end();
    let started = Instant::now();
    publisher.publish(&alert_tasks("during")).await.unwrap();
    println!(
        "same publisher after the restart (reconnect + send): {:?}",
        started.elapsed()
    );
    publisher.publish(&alert_tasks("after")).await.unwrap();

    for (name, index) in queues.all().into_iter().zip(0..) {
        let got = receive(name, 10, 3.0);
        // before (kept across the stop: durable queue, durable message), during, after.
        let expected: Vec<String> = ["before", "during", "after"]
            .iter()
            .map(|alert| alert_tasks(alert)[index].message_id.to_string())
            .collect();
        assert_delivered(name, &got, &expected);
    }
}
