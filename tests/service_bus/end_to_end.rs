//! The real binary (`serve`) publishing to the broker: an alert delivered as the Functions host
//! delivers it lands on the three queues with every property, and a broker outage makes the
//! invocation fail (503) so the host redelivers, which then publishes the same message ids.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const BINARY: &str = env!("CARGO_BIN_EXE_defender-responder");

struct Server {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts `serve` on a free port with a temporary store, publishing to `queues` on the
    /// local broker with short timeouts; returns once the readiness probe answers.
    async fn start(dir: &Path, queues: &TestQueues) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("handler.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BINARY)
            .arg("serve")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("RESPONDER_STORE_PATH", dir.join("store.sqlite3"))
            .env("ServiceBusConnection", BROKER)
            .env("RESPONDER_SB_MESSAGE_TTL_SECONDS", "3600")
            .env("RESPONDER_SB_CONNECT_TIMEOUT_SECONDS", "3")
            .env("RESPONDER_SB_SEND_TIMEOUT_SECONDS", "3")
            .env("RUST_LOG", "info")
            .envs(queues.settings())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if client.get(&server.url).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the handler did not answer its readiness probe within 15 s");
    }

    /// Posts one event as the Functions host does; returns the status and the reply.
    async fn deliver(&self, event: &Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/DefenderAlert", self.url))
            .json(&json!({"Data": {"event": event}, "Metadata": {}}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first event of the Key Vault fixture, with its alert id suffixed by `suffix`.
fn event(suffix: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alerts/keyvault-KV_SuspiciousIPAccess-egrest.json"
    );
    let events: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut event = events[0].clone();
    let id = event["data"]["properties"]["systemAlertId"]
        .as_str()
        .unwrap()
        .to_string();
    event["data"]["properties"]["systemAlertId"] = json!(format!("{id}{suffix}"));
    event["id"] = json!(format!("{}{suffix}", event["id"].as_str().unwrap()));
    event
}

/// The reply's tasks, grouped by queue kind (`notification`, `isolation`, `rotation`).
fn tasks_by_queue(reply: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut by_queue: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for task in reply["ReturnValue"]["tasks"].as_array().unwrap() {
        by_queue
            .entry(task["queue"].as_str().unwrap().to_string())
            .or_default()
            .push(task.clone());
    }
    by_queue
}

fn queue_name<'a>(queues: &'a TestQueues, kind: &str) -> &'a str {
    match kind {
        "notification" => &queues.names.notification,
        "isolation" => &queues.names.isolation,
        "rotation" => &queues.names.rotation,
        other => panic!("unknown queue {other}"),
    }
}

#[tokio::test]
async fn an_alert_delivered_to_the_binary_lands_on_the_queues_with_every_property() {
    let _serial = serial().await;
    let queues = TestQueues::new("e2e");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &queues).await;

    let event = event("");
    let (status, reply) = server.deliver(&event).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ReturnValue"]["outcome"], "planned", "{reply}");
    let system_alert_id = event["data"]["properties"]["systemAlertId"].clone();
    let by_queue = tasks_by_queue(&reply);
    assert_eq!(
        by_queue.keys().map(String::as_str).collect::<Vec<_>>(),
        ["isolation", "notification", "rotation"],
        "the fixture plans tasks on all three queues"
    );

    for (kind, tasks) in &by_queue {
        let name = queue_name(&queues, kind);
        let got = receive(name, tasks.len() + 2, 3.0);
        let ids: Vec<&str> = tasks
            .iter()
            .map(|t| t["message_id"].as_str().unwrap())
            .collect();
        assert_delivered(name, &got, &ids);
        for task in tasks {
            let id = task["message_id"].as_str().unwrap();
            let m = got
                .iter()
                .find(|m| m["id"] == id)
                .unwrap_or_else(|| panic!("{id} not on {name}"));
            let body: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
            assert_eq!(&body, task, "body is the task");
            assert_eq!(m["correlation_id"], system_alert_id);
            assert_eq!(m["subject"], task["action"]);
            assert_eq!(m["content_type"], "application/json");
            assert_eq!(m["durable"], true);
            assert_eq!(m["ttl"], 3600.0);
            assert_eq!(m["group_id"], Value::Null, "sessions are off by default");
            let p = &m["properties"];
            assert_eq!(p["alert_type"], "KV_SuspiciousIPAccess");
            assert_eq!(p["alert_type"], task["alert"]["alert_type"]);
            assert_eq!(p["service"], task["alert"]["service"]);
            assert_eq!(p["severity"], task["alert"]["severity"]);
            let steps: Vec<&str> = task["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            assert_eq!(p["steps"], steps.join(","));
            assert_eq!(p["dry_run"], task["dry_run"]);
        }
    }

    // The redelivery of a planned alert is a duplicate: nothing more is published.
    let (status, reply) = server.deliver(&event).await;
    assert_eq!(status, 200);
    assert_eq!(reply["ReturnValue"]["outcome"], "duplicate", "{reply}");
    for name in queues.all() {
        assert!(receive(name, 1, 1.0).is_empty(), "{name} got a second copy");
    }

    let logs = server.logs();
    assert!(
        logs.contains("publisher=\"service_bus\"") || logs.contains("publisher=service_bus"),
        "{logs}"
    );
    assert!(logs.contains("amqp://127.0.0.1:5672"), "{logs}");
    assert!(!logs.contains("guest:guest"), "{logs}");
}

#[tokio::test]
async fn a_broker_outage_fails_the_invocation_and_the_redelivery_publishes_the_same_ids() {
    let _serial = serial().await;
    let queues = TestQueues::new("e2e-fault");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &queues).await;
    let event = event("-outage");

    let mut outage = BrokerOutage::begin();
    let started = Instant::now();
    let (status, reply) = server.deliver(&event).await;
    let took = started.elapsed();
    println!("invocation while the broker is stopped: {status} after {took:?}: {reply}");
    assert_eq!(status, 503, "{reply}");
    assert!(took < Duration::from_secs(12), "{took:?}");
    outage.end();

    // The host redelivers the same event: planned (the failed attempt recorded nothing).
    let started = Instant::now();
    let (status, reply) = server.deliver(&event).await;
    println!(
        "redelivery after the restart: {status} after {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ReturnValue"]["outcome"], "planned", "{reply}");

    // Every task is there once, under the id derived from the alert, action and target.
    for (kind, tasks) in tasks_by_queue(&reply) {
        let name = queue_name(&queues, &kind);
        let got = receive(name, tasks.len() + 2, 3.0);
        let ids: Vec<&str> = tasks
            .iter()
            .map(|t| t["message_id"].as_str().unwrap())
            .collect();
        assert_delivered(name, &got, &ids);
    }
}

#[tokio::test]
async fn a_missing_queue_fails_readiness_and_invocations_until_it_exists_and_nothing_is_lost() {
    let _serial = serial().await;
    let queues = TestQueues::new("e2e-absent");
    rabbitmqctl(&["delete_queue", &queues.names.rotation]);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &queues).await;
    let client = reqwest::Client::new();

    // The start-up check finds the queue missing; readiness names it and its setting.
    let deadline = Instant::now() + Duration::from_secs(15);
    let readiness = loop {
        let response = client.get(&server.url).send().await.unwrap();
        if response.status().as_u16() == 503 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "readiness never reported the missing queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = readiness["reason"].as_str().unwrap();
    assert!(reason.contains(&queues.names.rotation), "{reason}");
    assert!(reason.contains("RESPONDER_QUEUE_ROTATION"), "{reason}");

    // Every delivery gets a retryable reply: the host fails the invocation, Event Grid retries.
    let event = event("-absent");
    for _ in 0..3 {
        let (status, reply) = server.deliver(&event).await;
        assert_eq!(status, 503, "{reply}");
        assert_eq!(reply["ReturnValue"]["kind"], "configuration", "{reply}");
        let logs = reply["Logs"][0].as_str().unwrap();
        assert!(logs.contains(&queues.names.rotation), "{logs}");
    }
    // The same fault is logged once, not once per delivery (and not again by the start-up
    // check, which repeats every 15 s).
    let logs = server.logs();
    let lines = logs
        .lines()
        .filter(|l| l.contains("Configuration fault;"))
        .count();
    assert_eq!(lines, 1, "{logs}");

    // Once the queue exists, the redelivery is planned and every task is on its queue.
    tool(&["declare", BROKER, &queues.names.rotation]);
    let (status, reply) = server.deliver(&event).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ReturnValue"]["outcome"], "planned", "{reply}");
    let response = client.get(&server.url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "readiness recovers");
    for (kind, tasks) in tasks_by_queue(&reply) {
        let name = queue_name(&queues, &kind);
        let got = receive(name, tasks.len() * 5, 3.0);
        let ids: Vec<&str> = tasks
            .iter()
            .map(|t| t["message_id"].as_str().unwrap())
            .collect();
        // The failed attempts may have left copies on the queues that existed (RabbitMQ has
        // no duplicate detection); every id is there, none is missing.
        assert_delivered(name, &got, &ids);
    }
}
