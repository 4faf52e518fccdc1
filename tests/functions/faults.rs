//! Broken environments against the real binary, the real SQLite file and real HTTP: the
//! store's folder deleted while serving, a truncated WAL index, a low file-descriptor limit.

use std::path::Path;
use std::time::{Duration, Instant};

use defender_responder::adapters::{EmbeddedStore, QueueNames};
use defender_responder::domain::Queue;
use serde_json::{json, Value};

use crate::helpers::{events_of, invocation, BinaryServer as Server};

/// Copy `n` of a real alert: its own systemAlertId, so each is planned.
fn alert(n: usize) -> Value {
    let mut event = events_of("alerts/keyvault-KV_SuspiciousIPAccess-egrest.json").remove(0);
    let id = event["data"]["properties"]["systemAlertId"]
        .as_str()
        .unwrap()
        .to_string();
    event["data"]["properties"]["systemAlertId"] = json!(format!("{id}-fault-{n}"));
    event["id"] = json!(format!("fault-event-{n}"));
    event
}

/// Invokes `DefenderAlert`; returns the status and the reply's task message ids.
async fn invoke(server: &Server, event: &Value) -> (u16, Vec<String>) {
    let response = reqwest::Client::new()
        .post(format!("{}/DefenderAlert", server.url))
        .json(&invocation(event))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let ids = body["ReturnValue"]["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|task| task["message_id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (status, ids)
}

fn stored_ids(store: &Path) -> Vec<String> {
    let store = EmbeddedStore::open(store, QueueNames::default()).unwrap();
    Queue::ALL
        .iter()
        .flat_map(|queue| store.peek(*queue, 10_000).unwrap())
        .map(|message| message.message_id)
        .collect()
}

#[tokio::test]
async fn deleting_the_store_folder_while_serving_never_acknowledges_a_lost_write() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("state");
    let store = folder.join("store.sqlite3");
    let server = Server::start(&store, &[], None).await;
    let (status, _) = invoke(&server, &alert(0)).await;
    assert_eq!(status, 200);

    // The folder goes, and a file takes its place: the store cannot be reopened.
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::write(&folder, b"in the way").unwrap();
    let (status, _) = invoke(&server, &alert(1)).await;
    assert_eq!(status, 503, "a write that cannot be durable is retryable");

    // The path is creatable again: the store reopens and the retry is durable.
    std::fs::remove_file(&folder).unwrap();
    let mut acknowledged = Vec::new();
    for n in 1..4 {
        let (status, ids) = invoke(&server, &alert(n)).await;
        assert_eq!(status, 200);
        acknowledged.extend(ids);
    }
    let log = server.log();
    assert!(server.kill().is_none(), "the handler was still running");
    assert!(log.contains("Embedded store unavailable"), "{log}");
    assert!(log.contains("Embedded store reopened"), "{log}");
    assert_all_stored(&store, &acknowledged);

    // Deleted and delivered to at once: the delivery lands in a store at the path (or is
    // retryable), never in the deleted file.
    let server = Server::start(&store, &[], None).await;
    std::fs::remove_dir_all(&folder).unwrap();
    let (status, ids) = invoke(&server, &alert(4)).await;
    assert!(status == 200 || status == 503, "{status}");
    let acknowledged = if status == 200 { ids } else { Vec::new() };
    assert!(server.kill().is_none());
    assert_all_stored(&store, &acknowledged);
}

fn assert_all_stored(store: &Path, acknowledged: &[String]) {
    let mut stored = stored_ids(store);
    stored.sort();
    for id in acknowledged {
        assert!(
            stored.binary_search(id).is_ok(),
            "acknowledged task {id} is not in the store after a restart"
        );
    }
}

#[tokio::test]
async fn a_truncated_wal_index_cannot_crash_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let server = Server::start(&store, &[], None).await;
    let (status, mut acknowledged) = invoke(&server, &alert(0)).await;
    assert_eq!(status, 200);
    let shm = dir.path().join("store.sqlite3-shm");
    // Whatever is (or is not) at the index path, truncate it as a full disk or a careless
    // clean-up would; a memory-mapped index would now kill the process with SIGBUS.
    std::fs::write(&shm, b"").unwrap();
    for n in 1..4 {
        let (status, ids) = invoke(&server, &alert(n)).await;
        assert_eq!(status, 200);
        acknowledged.extend(ids);
        std::fs::write(&shm, b"").unwrap();
    }
    assert!(server.kill().is_none(), "the handler died");
    assert_all_stored(&store, &acknowledged);
}

#[tokio::test]
async fn many_stalled_connections_under_a_low_descriptor_limit_never_stop_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let server = Server::start(
        &store,
        &[
            ("RESPONDER_HTTP_MAX_CONNECTIONS", "16"),
            ("RESPONDER_HTTP_IDLE_TIMEOUT_SECONDS", "0.5"),
            ("RESPONDER_HTTP_HEADER_TIMEOUT_SECONDS", "0.5"),
        ],
        Some("ulimit -n 64;"),
    )
    .await;
    // More silent connections than the process has descriptors.
    let address = server.url.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let connect = tokio::net::TcpStream::connect(&address);
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            stalled.push(stream);
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client.get(&server.url).send().await;
    assert!(
        response.is_ok_and(|r| r.status() == 200),
        "the readiness probe was not answered"
    );
    eprintln!(
        "probe answered after {:?} behind {} stalled connections",
        started.elapsed(),
        stalled.len()
    );
    let (status, _) = invoke(&server, &alert(0)).await;
    assert_eq!(status, 200);
    drop(stalled);
    assert!(server.kill().is_none());
}
