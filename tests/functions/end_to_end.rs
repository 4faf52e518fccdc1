//! The real binary: `serve` on a free port fed over HTTP, then `queues`, `plan` and `send`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use defender_responder::adapters::{EmbeddedStore, QueueNames};
use serde_json::{json, Value};

use crate::helpers::{events_of, root};

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_defender-responder");

pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn start(store: &Path) -> Server {
    let port = free_port();
    let child = Command::new(BINARY)
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("RESPONDER_STORE_PATH", store)
        // What intake queued stays on the queues (the workers would take it off).
        .env("RESPONDER_EMBEDDED_WORKERS", "false")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Poll like the host does (every 25 ms) until anything answers.
    let deadline = Instant::now() + Duration::from_secs(15);
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        if client.get(&server.url).send().await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the handler did not answer its readiness probe within 15 s");
}

pub(crate) fn store_counts(path: &Path) -> Vec<(String, u64)> {
    EmbeddedStore::open(path, QueueNames::default())
        .unwrap()
        .counts()
        .unwrap()
}

/// Invokes `DefenderAlert` on a running handler as the host does and returns the reply.
async fn invoke(client: &reqwest::Client, server: &Server, payload: Value) -> Value {
    client
        .post(format!("{}/DefenderAlert", server.url))
        .header("x-azure-functions-invocationid", "e2e")
        .json(&payload)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn deliveries_over_http_land_in_the_embedded_store_and_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let server = start(&store).await;
    let client = reqwest::Client::new();

    // Host invocation, event as an object.
    let event = events_of("alerts/keyvault-KV_SuspiciousIPAccess-egrest.json").remove(0);
    let payload = json!({"Data": {"event": event}, "Metadata": {"data": event["data"]}});
    let reply = invoke(&client, &server, payload).await;
    assert_eq!(reply["ReturnValue"]["outcome"], "planned", "{reply}");

    // Host invocation, event as a JSON string.
    let event = events_of("alerts/dns-AzureDNS_PhishingDomain-egrest.json").remove(0);
    let payload = json!({"Data": {"event": event.to_string()}, "Metadata": {}});
    let reply = invoke(&client, &server, payload).await;
    assert_eq!(reply["ReturnValue"]["outcome"], "planned", "{reply}");

    // Webhook batch, then the same batch again (an Event Grid retry).
    let batch =
        std::fs::read(root().join("tests/fixtures/alerts/eventgrid-batch-mixed3.json")).unwrap();
    for expected in ["planned", "duplicate"] {
        let response = client
            .post(format!("{}/api/defender-alerts", server.url))
            .header("content-type", "application/json")
            .header("aeg-event-type", "Notification")
            .body(batch.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let reply: Value = response.json().await.unwrap();
        assert!(
            reply["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["outcome"] == expected),
            "{reply}"
        );
    }

    // Kill -9: what was acknowledged is on disk.
    drop(server);
    let counts = store_counts(&store);
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert!(total >= 8, "{counts:?}");
    assert!(
        counts.iter().all(|(_, n)| *n > 0),
        "every queue got tasks: {counts:?}"
    );

    // `queues` reads the same store.
    let output = Command::new(BINARY)
        .args(["queues", "--peek", "1"])
        .env("RESPONDER_STORE_PATH", &store)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing: Value = serde_json::from_slice(&output.stdout).unwrap();
    let listed: u64 = listing["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["count"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, total);
    assert_eq!(
        listing["queues"][0]["peek"][0]["body"]["queue"],
        "notification"
    );

    // A restarted handler remembers what it handled: the redelivery is a duplicate.
    let server = start(&store).await;
    let event = events_of("alerts/keyvault-KV_SuspiciousIPAccess-egrest.json").remove(0);
    let reply = invoke(
        &client,
        &server,
        json!({"Data": {"event": event}, "Metadata": {}}),
    )
    .await;
    assert_eq!(reply["ReturnValue"]["outcome"], "duplicate", "{reply}");

    // While serving, the handler holds the store; `queues` says so instead of guessing.
    let output = Command::new(BINARY)
        .args(["queues"])
        .env("RESPONDER_STORE_PATH", &store)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("held by another process"), "{stderr}");

    drop(server);
    assert_eq!(store_counts(&store), counts);

    // `work --once` carries out (or records) every queued task of the stopped handler.
    let output = Command::new(BINARY)
        .args(["work", "--once", "--format", "json"])
        .env("RESPONDER_STORE_PATH", &store)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let completed = report["drain"]["completed"].as_u64().unwrap();
    assert_eq!(completed, total, "{report}");
    assert_eq!(store_counts(&store).iter().map(|(_, n)| n).sum::<u64>(), 0);
    let output = Command::new(BINARY)
        .args(["journal", "--format", "json", "--limit", "1000"])
        .env("RESPONDER_STORE_PATH", &store)
        .output()
        .unwrap();
    let journal: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(journal.as_array().unwrap().len() as u64, total, "{journal}");
}

#[tokio::test]
async fn the_send_command_delivers_files_in_each_style() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let server = start(&store).await;
    let file = root().join("tests/fixtures/alerts/arm-ARM_MicroBurst.RunCodeOnBehalf-ce.json");
    for (style, extra) in [
        ("host", None),
        ("host", Some("--string-form")),
        ("webhook", None),
    ] {
        let mut command = Command::new(BINARY);
        command
            .arg("send")
            .arg(&file)
            .args(["--url", &server.url, "--as", style]);
        if let Some(flag) = extra {
            command.arg(flag);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{style}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("200 OK"), "{stdout}");
    }
    drop(server);
    let total: u64 = store_counts(&store).iter().map(|(_, n)| n).sum();
    assert!(total >= 1);
}

#[test]
fn plan_prints_the_documented_json_and_exits_non_zero_only_for_unreadable_files() {
    let alerts = root().join("tests/fixtures/alerts");
    let output = Command::new(BINARY)
        .arg("plan")
        .arg(alerts.join("keyvault-KV_PutGetAnomaly-egrest.json"))
        .arg(alerts.join("keyvault-KV_PutGetAnomaly-malformed-truncated.json"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let first = &plan["inputs"][0];
    assert_eq!(first["error"], Value::Null);
    let event = &first["events"][0];
    for field in ["event_id", "outcome", "reason", "alert", "tasks"] {
        assert!(event.get(field).is_some(), "missing {field}");
    }
    for field in [
        "alert_type",
        "system_alert_id",
        "service",
        "severity",
        "status",
    ] {
        assert!(event["alert"].get(field).is_some(), "missing alert.{field}");
    }
    for field in [
        "queue",
        "action",
        "steps",
        "target",
        "message_id",
        "dry_run",
    ] {
        assert!(
            event["tasks"][0].get(field).is_some(),
            "missing task.{field}"
        );
    }
    assert!(plan["inputs"][1]["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON at line"));

    let output = Command::new(BINARY)
        .args(["plan", "/nonexistent/alert.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(plan["inputs"][0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot read the file"));
}
