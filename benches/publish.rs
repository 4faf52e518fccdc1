//! Publish throughput against the local broker: `ServiceBusPublisher` next to proton's raw rate.
//!
//! `cargo bench --bench publish` (release; `BENCH_N` alerts of 3 tasks, default 3000) prints
//! messages per second for sequential publishes, for 32 concurrent publishers with 1, 4 and 8
//! sender links per queue, and for python-qpid-proton sending the same number of messages
//! pipelined into one queue in the same run. Under `cargo test` (no `--bench` argument) it runs a
//! small smoke round and checks that every message arrived. Needs the broker of
//! scripts/ensure-broker.sh and python-qpid-proton; it fails rather than skips without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use defender_responder::adapters::{
    Publisher, QueueNames, ServiceBusPublisher, ServiceBusSettings,
};
use defender_responder::domain::{Action, AlertRef, AlertStatus, Severity, Task};
use defender_responder::services::KeyVault;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672";
const TOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/service_bus/support/amqp_tool.py"
);
const CONCURRENCY: usize = 32;

fn tool(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(TOOL)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "amqp_tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Fresh durable queues of this run (`dr-bench-<pid>-<tag>-...`), so parallel runs and other
/// people's benchmarks on the same broker never share a queue.
fn queues(tag: &str) -> QueueNames {
    let names =
        QueueNames::from_fn(|queue| format!("dr-bench-{}-{tag}-{queue}", std::process::id()));
    tool(&[
        "declare",
        BROKER,
        &names.notification,
        &names.isolation,
        &names.rotation,
    ]);
    names
}

fn delete(names: &QueueNames) {
    for name in [&names.notification, &names.isolation, &names.rotation] {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_queue", name])
            .output();
    }
}

/// Messages waiting in each of `names`, from the broker itself.
fn depth(names: &QueueNames) -> Vec<u64> {
    let out = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "name", "messages"])
        .output()
        .expect("rabbitmqctl runs");
    let listed: HashMap<String, u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
        })
        .collect();
    [&names.notification, &names.isolation, &names.rotation]
        .iter()
        .map(|n| listed.get(n.as_str()).copied().unwrap_or(0))
        .collect()
}

fn publisher(names: &QueueNames, links: usize) -> ServiceBusPublisher {
    let links = links.to_string();
    let get = |k: &str| match k {
        "ServiceBusConnection" => Some(BROKER.to_string()),
        "RESPONDER_SB_LINKS_PER_QUEUE" => Some(links.clone()),
        _ => None,
    };
    ServiceBusPublisher::new(
        ServiceBusSettings::from_lookup(&get, names.clone())
            .unwrap()
            .unwrap(),
    )
}

fn alert_tasks(alert: &str) -> Vec<Task> {
    let alert_ref = AlertRef {
        system_alert_id: alert.into(),
        alert_type: "KV_SuspiciousIPAccess".into(),
        service: KeyVault::NAME,
        severity: Severity::High,
        status: AlertStatus::Active,
        resource: "kv-contoso".into(),
        alert_uri: None,
    };
    vec![
        Task::example(
            &alert_ref,
            Action::ContactOwner,
            &["KV-1"],
            "owner@example.com",
            "bench",
        ),
        Task::example(
            &alert_ref,
            Action::RestrictPrincipal,
            &["KV-2a"],
            "principal-1",
            "bench",
        ),
        Task::example(
            &alert_ref,
            Action::RotateSecret,
            &["KV-3"],
            "https://kv/secrets/s",
            "bench",
        ),
    ]
}

/// Publishes `n` alerts with `concurrency` publishers sharing one `ServiceBusPublisher`;
/// returns messages per second, after checking every message is in its queue.
async fn run(label: &str, n: usize, concurrency: usize, links: usize) -> f64 {
    let names = queues(&format!("c{concurrency}-l{links}"));
    let publisher = Arc::new(publisher(&names, links));
    publisher.connect_now().await.unwrap();
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(concurrency) {
                    publisher
                        .publish(&alert_tasks(&format!("bench-{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = (3 * n) as f64 / secs;
    println!(
        "{label:<34} {n:>6} alerts x 3 = {:>6} msgs in {secs:>6.2} s = {rate:>7.0} msgs/s ({} links/queue, {} in flight)",
        3 * n,
        links,
        concurrency
    );
    let got = depth(&names);
    delete(&names);
    assert_eq!(
        got,
        vec![n as u64; 3],
        "{label}: every message is in its queue"
    );
    rate
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = if full {
        std::env::var("BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000)
    } else {
        64
    };
    println!(
        "publish benchmark ({}): {n} alerts per row, broker 127.0.0.1:5672",
        if full {
            "full"
        } else {
            "smoke run under cargo test"
        },
    );
    run("sequential", n, 1, 1).await;
    run("concurrent, 1 link per queue", n, CONCURRENCY, 1).await;
    run("concurrent, 4 links per queue", n, CONCURRENCY, 4).await;
    run("concurrent, 8 links per queue", n, CONCURRENCY, 8).await;

    let names = queues("proton");
    let body = serde_json::to_vec(&alert_tasks("bench-0")[0])
        .unwrap()
        .len();
    let raw = tool(&[
        "bench",
        BROKER,
        &format!("/amq/queue/{}", names.notification),
        &(3 * n).to_string(),
        &body.to_string(),
    ]);
    let raw: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    println!(
        "{:<34} {:>6} msgs of {body} B pipelined into one queue    = {:>7.0} msgs/s",
        "python-qpid-proton raw",
        3 * n,
        raw["msgs_per_sec"].as_f64().unwrap()
    );
    let got = depth(&names);
    delete(&names);
    assert_eq!(
        got[0],
        3 * n as u64,
        "proton: every message is in the queue"
    );
}
