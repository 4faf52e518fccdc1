//! Shared helpers: the serial lock, per-test queues, tasks, the proton client and broker control.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use defender_responder::adapters::{QueueNames, ServiceBusPublisher, ServiceBusSettings};
use defender_responder::domain::{Action, AlertRef, AlertStatus, Severity, Task};
use defender_responder::services::KeyVault;
use serde_json::Value;

/// The local broker (scripts/ensure-broker.sh): RabbitMQ with AMQP 1.0, guest/guest.
pub(crate) const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672";
const TOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/service_bus/support/amqp_tool.py"
);

/// Every test of this binary holds this lock: the fault tests stop the broker, the identity test
/// sets process environment variables, and the others need a running broker.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the serial lock and checks the broker is there. A missing broker fails the test:
/// scripts/test.sh and CI always provide one.
pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    wait_for_broker(Duration::from_secs(30));
    guard
}

/// Waits until the broker accepts AMQP connections, or panics.
pub(crate) fn wait_for_broker(limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect("127.0.0.1:5672").is_err() {
        assert!(
            Instant::now() < deadline,
            "no AMQP broker on 127.0.0.1:5672: run scripts/ensure-broker.sh"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three queues of this test's own (`dr-test-<tag>-<pid>-<n>-{notification,...}`), declared
/// durable on the broker and deleted when dropped.
pub(crate) struct TestQueues {
    /// The names, as the handler's `RESPONDER_QUEUE_*` settings take them.
    pub(crate) names: QueueNames,
}

impl TestQueues {
    pub(crate) fn new(tag: &str) -> Self {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let names = QueueNames::from_fn(|queue| {
            format!("dr-test-{tag}-{}-{nonce}-{queue}", std::process::id())
        });
        tool(&[
            "declare",
            BROKER,
            &names.notification,
            &names.isolation,
            &names.rotation,
        ]);
        TestQueues { names }
    }

    /// The names in the fixed queue order (notification, isolation, rotation).
    pub(crate) fn all(&self) -> [&str; 3] {
        [
            &self.names.notification,
            &self.names.isolation,
            &self.names.rotation,
        ]
    }

    /// The `RESPONDER_QUEUE_*` settings naming these queues.
    pub(crate) fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "RESPONDER_QUEUE_NOTIFICATION",
                self.names.notification.clone(),
            ),
            ("RESPONDER_QUEUE_ISOLATION", self.names.isolation.clone()),
            ("RESPONDER_QUEUE_ROTATION", self.names.rotation.clone()),
        ]
    }
}

impl Drop for TestQueues {
    fn drop(&mut self) {
        for name in self.all() {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_queue", name])
                .output();
        }
    }
}

/// Settings for the local broker plus `extra`, with these queues.
pub(crate) fn settings(queues: &TestQueues, extra: &[(&str, &str)]) -> ServiceBusSettings {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert("ServiceBusConnection".into(), BROKER.into());
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    let get = move |k: &str| map.get(k).cloned();
    ServiceBusSettings::from_lookup(&get, queues.names.clone())
        .unwrap()
        .unwrap()
}

/// A publisher for the local broker and these queues.
pub(crate) fn publisher(queues: &TestQueues, extra: &[(&str, &str)]) -> ServiceBusPublisher {
    ServiceBusPublisher::new(settings(queues, extra))
}

/// The three tasks of one alert, one per queue; the rotation task is a dry run.
pub(crate) fn alert_tasks(alert: &str) -> Vec<Task> {
    let alert_ref = AlertRef {
        system_alert_id: alert.into(),
        alert_type: "KV_SuspiciousIPAccess".into(),
        service: KeyVault::NAME,
        severity: Severity::High,
        status: AlertStatus::Active,
        resource: "kv-contoso".into(),
        alert_uri: None,
    };
    let mut rotate = Task::example(
        &alert_ref,
        Action::RotateSecret,
        &["KV-3"],
        "https://kv.vault.azure.net/secrets/s1",
        format!("alert {alert}"),
    );
    rotate.dry_run = true;
    vec![
        Task::example(
            &alert_ref,
            Action::ContactOwner,
            &["KV-1"],
            "owner@example.com",
            format!("alert {alert}"),
        ),
        Task::example(
            &alert_ref,
            Action::RestrictPrincipal,
            &["KV-1", "KV-2a"],
            "principal-1234",
            format!("alert {alert}"),
        ),
        rotate,
    ]
}

/// Runs the independent AMQP client (python-qpid-proton); panics when it fails.
pub(crate) fn tool(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(TOOL)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "amqp_tool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Reads (and accepts) up to `count` messages from `queue`, waiting at most `timeout` seconds.
pub(crate) fn receive(queue: &str, count: usize, timeout: f64) -> Vec<Value> {
    tool(&[
        "recv",
        BROKER,
        &format!("/amq/queue/{queue}"),
        &count.to_string(),
        &timeout.to_string(),
    ])
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect()
}

/// How often each message id occurs in `messages`.
pub(crate) fn id_counts(messages: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in messages {
        *counts
            .entry(m["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

/// Checks that `got` (read from `queue`) holds exactly the message ids `expected`, each at least
/// once: nothing lost, nothing foreign. Returns how many copies came twice.
///
/// A duplicate is possible by design (at-least-once): when a send's disposition does not arrive
/// within the send timeout, the publisher resends, and RabbitMQ, unlike Service Bus with
/// duplicate detection, keeps both copies. fe2o3-amqp 0.14.1 occasionally loses a disposition
/// that arrives before it records the delivery (see docs/decisions/0001), so the tests report
/// duplicates instead of failing on them.
pub(crate) fn assert_delivered<S: AsRef<str>>(queue: &str, got: &[Value], expected: &[S]) -> usize {
    let counts = id_counts(got);
    let mut have: Vec<&str> = counts.keys().map(String::as_str).collect();
    have.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(AsRef::as_ref).collect();
    want.sort_unstable();
    want.dedup();
    assert_eq!(have, want, "message ids on {queue}");
    let duplicates = got.len() - counts.len();
    if duplicates > 0 {
        println!("{queue}: {duplicates} duplicate(s) after a resend: {counts:?}");
    }
    duplicates
}

/// Runs `rabbitmqctl ARGS`, panicking on failure; returns how long it took.
pub(crate) fn rabbitmqctl(args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Stops the broker's application (`rabbitmqctl stop_app`) and starts it again when dropped,
/// also when the test fails half-way, so no later test finds the broker down.
pub(crate) struct BrokerOutage {
    stopped: bool,
}

impl BrokerOutage {
    pub(crate) fn begin() -> Self {
        let took = rabbitmqctl(&["stop_app"]);
        println!("rabbitmqctl stop_app: {took:?}");
        BrokerOutage { stopped: true }
    }

    /// Starts the broker again and waits for its AMQP listener; returns how long that took.
    pub(crate) fn end(&mut self) -> Duration {
        let started = Instant::now();
        rabbitmqctl(&["start_app"]);
        self.stopped = false;
        wait_for_broker(Duration::from_secs(60));
        let took = started.elapsed();
        println!("rabbitmqctl start_app until the listener answers: {took:?}");
        took
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new("rabbitmqctl").arg("start_app").output();
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::net::TcpStream::connect("127.0.0.1:5672").is_err()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Deletes the `$cbs` queue RabbitMQ declares when a client opens `$cbs` (the CLI rejects `$`).
pub(crate) fn delete_cbs_queue() {
    let _ = Command::new("rabbitmqctl")
        .args(["eval", "[rabbit_amqqueue:delete(Q, false, false, <<\"cleanup\">>) || Q <- rabbit_amqqueue:list(), element(4, amqqueue:get_name(Q)) =:= <<36,99,98,115>>]."])
        .output();
}
