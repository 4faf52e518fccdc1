//! `ServiceBusPublisher` against the real broker, read back with the independent proton client.

use std::sync::Arc;
use std::time::Instant;

use defender_responder::adapters::{Publisher, ServiceBusPublisher, ServiceBusSettings};
use defender_responder::error::ErrorKind;

use crate::support::*;

#[tokio::test]
async fn publishes_an_alerts_tasks_with_every_property() {
    let _serial = serial().await;
    let queues = TestQueues::new("props");
    let publisher = publisher(
        &queues,
        &[
            ("RESPONDER_SB_MESSAGE_TTL_SECONDS", "600"),
            ("RESPONDER_SB_SESSIONS", "true"),
        ],
    );
    publisher.connect_now().await.unwrap();
    let tasks = alert_tasks("alert-props-1");
    publisher.publish(&tasks).await.unwrap();

    for (name, task) in queues.all().into_iter().zip(&tasks) {
        let got = receive(name, 5, 3.0);
        assert_delivered(name, &got, &[task.message_id.as_str()]);
        let m = &got[0];
        let body: serde_json::Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, serde_json::to_value(task).unwrap());
        assert_eq!(m["body_type"], "memoryview", "body is one data section");
        assert_eq!(m["id"], task.message_id.as_str());
        assert_eq!(m["correlation_id"], "alert-props-1");
        assert_eq!(m["subject"], task.action.as_str());
        assert_eq!(m["content_type"], "application/json");
        assert_eq!(m["durable"], true);
        assert_eq!(m["ttl"], 600.0);
        assert_eq!(m["group_id"], task.target.as_str());
        let p = &m["properties"];
        assert_eq!(p["alert_type"], "KV_SuspiciousIPAccess");
        assert_eq!(p["service"], "key_vault");
        assert_eq!(p["severity"], "High");
        assert_eq!(p["steps"], task.steps.join(","));
        assert_eq!(p["dry_run"], task.dry_run);
    }
}

#[tokio::test]
async fn concurrent_publishes_use_the_link_pool_and_every_message_arrives() {
    let _serial = serial().await;
    let queues = TestQueues::new("pool");
    for (links, expect_more_than_one) in [("1", false), ("4", true)] {
        let publisher = Arc::new(publisher(
            &queues,
            &[("RESPONDER_SB_LINKS_PER_QUEUE", links)],
        ));
        let started = Instant::now();
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let publisher = publisher.clone();
                tokio::spawn(async move {
                    publisher
                        .publish(&alert_tasks(&format!("pool-{links}-{i}")))
                        .await
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap().unwrap();
        }
        println!(
            "32 concurrent publishes of 3 tasks with {links} link(s) per queue: {:?}",
            started.elapsed()
        );
        for name in queues.all() {
            let attached = publisher.link_count(name).await;
            assert!(attached >= 1 && attached <= links.parse().unwrap());
            assert_eq!(
                attached > 1,
                expect_more_than_one,
                "{name}: {attached} links"
            );
            let got = receive(name, 40, 3.0);
            let index = queues.all().iter().position(|q| *q == name).unwrap();
            let expected: Vec<String> = (0..32)
                .map(|i| {
                    alert_tasks(&format!("pool-{links}-{i}"))[index]
                        .message_id
                        .to_string()
                })
                .collect();
            assert_delivered(name, &got, &expected);
        }
    }
}

#[tokio::test]
async fn an_oversized_task_is_permanent_and_never_sent() {
    let _serial = serial().await;
    let queues = TestQueues::new("big");
    let mut tasks = alert_tasks("big-1");
    tasks.truncate(1);
    tasks[0].reason = "x".repeat(300 * 1024);
    let publisher = publisher(&queues, &[]);
    let err = publisher.publish(&tasks).await.unwrap_err();
    assert!(err.kind() == ErrorKind::Permanent, "{err}");
    assert!(
        err.to_string().contains("RESPONDER_SB_MAX_MESSAGE_BYTES"),
        "{err}"
    );
    // Refused before connecting: no connection, no link, nothing in the queue.
    assert_eq!(publisher.link_count(&queues.names.notification).await, 0);
    assert!(receive(&queues.names.notification, 1, 1.0).is_empty());
}

/// The SAS path up to the broker: an emulator-style connection string makes the publisher open
/// `$cbs` and put a token, which RabbitMQ cannot answer; the failure is transient and does not
/// quote the key.
#[tokio::test]
async fn sas_over_cbs_against_a_broker_without_cbs_is_transient() {
    let _serial = serial().await;
    let queues = TestQueues::new("cbs");
    let map = [
        ("ServiceBusConnection", "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=S3CR3T;UseDevelopmentEmulator=true"),
        ("RESPONDER_SB_CONNECT_TIMEOUT_SECONDS", "3"),
        ("RESPONDER_SB_SEND_TIMEOUT_SECONDS", "3"),
    ];
    let get = |k: &str| {
        map.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let settings = ServiceBusSettings::from_lookup(&get, queues.names.clone())
        .unwrap()
        .unwrap();
    let publisher = ServiceBusPublisher::new(settings);
    let started = Instant::now();
    let result = publisher.publish(&alert_tasks("cbs-1")[..1]).await;
    println!(
        "SAS + $cbs against RabbitMQ: {result:?} after {:?}",
        started.elapsed()
    );
    delete_cbs_queue();
    let err = result.unwrap_err();
    assert!(err.kind() == ErrorKind::Transient, "{err}");
    assert!(!err.to_string().contains("S3CR3T"));
}

/// amqps goes through rustls (no OpenSSL): against a listener that closes at once, the TLS
/// handshake fails as a transient error rather than a panic over rustls' crypto provider.
#[tokio::test]
async fn amqps_uses_rustls_and_a_failed_handshake_is_transient() {
    let _serial = serial().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        drop(socket);
    });
    let url = format!("amqps://127.0.0.1:{port}");
    let map = [
        ("ServiceBusConnection", url.as_str()),
        ("RESPONDER_SB_CONNECT_TIMEOUT_SECONDS", "3"),
    ];
    let get = |k: &str| {
        map.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let settings = ServiceBusSettings::from_lookup(&get, Default::default())
        .unwrap()
        .unwrap();
    let publisher = ServiceBusPublisher::new(settings);
    let err = publisher.connect_now().await.unwrap_err();
    accepted.await.unwrap();
    assert!(err.kind() == ErrorKind::Transient, "{err}");
}
