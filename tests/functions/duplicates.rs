//! Concurrent copies of one alert over real HTTP: one publishes, the others are duplicates
//! (or retryable while it is in flight), and no message id reaches the publisher twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use defender_responder::adapters::{EmbeddedStore, QueueNames};
use defender_responder::config::Limits;
use defender_responder::pipeline::Pipeline;
use defender_responder::policy::Policy;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use serde_json::{json, Value};

use crate::helpers::{events_of, invocation, BinaryServer, CountingPublisher, LiveServer};

const COPIES: usize = 50;

struct Setup {
    server: LiveServer,
    store: EmbeddedStore,
    publisher: Arc<CountingPublisher>,
    _dir: tempfile::TempDir,
}

async fn setup(pause: Duration, claim_wait: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("store.sqlite3"), QueueNames::default()).unwrap();
    let publisher = Arc::new(CountingPublisher {
        inner: store.clone(),
        pause,
        started: AtomicUsize::new(0),
        published: Mutex::new(HashMap::new()),
    });
    let state = AppState::new(
        Pipeline::new(Registry::standard(), Policy::default()).with_claim_wait(claim_wait),
        publisher.clone(),
        Arc::new(store.clone()),
    );
    let server = LiveServer::start(state, Limits::default()).await;
    Setup {
        server,
        store,
        publisher,
        _dir: dir,
    }
}

/// Copy `n` of the alert: same systemAlertId, a new Event Grid event id.
fn copy(event: &Value, n: usize) -> Value {
    let mut event = event.clone();
    event["id"] = json!(format!("copy-{n}-of-the-same-alert"));
    event
}

/// Delivers copy `n` as the host does (even n) or as Event Grid's webhook does (odd n);
/// returns the status and the outcome.
async fn deliver(client: &reqwest::Client, url: &str, event: Value, n: usize) -> (u16, String) {
    let response = if n.is_multiple_of(2) {
        client
            .post(format!("{url}/DefenderAlert"))
            .json(&invocation(&event))
            .send()
            .await
            .unwrap()
    } else {
        client
            .post(format!("{url}/api/defender-alerts"))
            .header("aeg-event-type", "Notification")
            .json(&json!([event]))
            .send()
            .await
            .unwrap()
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let outcome = body["ReturnValue"]["outcome"]
        .as_str()
        .or(body["events"][0]["outcome"].as_str())
        .unwrap_or("(none)")
        .to_string();
    (status, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_copies_of_one_alert_publish_its_plan_exactly_once() {
    let setup = setup(Duration::from_millis(200), Duration::from_secs(30)).await;
    let event = events_of("alerts/keyvault-KV_SuspiciousIPAccess-egrest.json").remove(0);
    let client = reqwest::Client::new();
    let deliveries: Vec<_> = (0..COPIES)
        .map(|n| {
            let (client, url, event) = (client.clone(), setup.server.url.clone(), copy(&event, n));
            tokio::spawn(async move { deliver(&client, &url, event, n).await })
        })
        .collect();
    let mut outcomes: HashMap<(u16, String), usize> = HashMap::new();
    for delivery in deliveries {
        *outcomes.entry(delivery.await.unwrap()).or_default() += 1;
    }
    assert_eq!(
        outcomes,
        HashMap::from([
            ((200, "planned".to_string()), 1),
            ((200, "duplicate".to_string()), COPIES - 1)
        ]),
        "one copy plans, every other copy is told it is a duplicate"
    );
    let published = setup.publisher.published.lock().unwrap().clone();
    assert!(!published.is_empty());
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "message ids published more than once: {twice:?}"
    );
    let stored: u64 = setup.store.counts().unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(stored as usize, published.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_that_cannot_wait_for_the_one_in_flight_is_retryable_never_acknowledged_early() {
    // Publishing takes far longer than a copy may wait.
    let setup = setup(Duration::from_millis(1500), Duration::from_millis(100)).await;
    let event = events_of("alerts/dns-AzureDNS_PhishingDomain-egrest.json").remove(0);
    let client = reqwest::Client::new();
    let first = {
        let (client, url, event) = (client.clone(), setup.server.url.clone(), copy(&event, 0));
        tokio::spawn(async move { deliver(&client, &url, event, 0).await })
    };
    // Wait until the first copy is publishing (its claim is held), then send the others.
    while setup.publisher.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let copies: Vec<_> = (1..10)
        .map(|n| {
            let (client, url, event) = (client.clone(), setup.server.url.clone(), copy(&event, n));
            tokio::spawn(async move { deliver(&client, &url, event, n).await })
        })
        .collect();
    for copy in copies {
        let (status, _) = copy.await.unwrap();
        assert_eq!(
            status, 503,
            "a copy is never acknowledged before the tasks are published"
        );
    }
    assert_eq!(first.await.unwrap(), (200, "planned".to_string()));
    // The platform's retry of a copy now finds the alert planned.
    assert_eq!(
        deliver(&client, &setup.server.url, copy(&event, 11), 11).await,
        (200, "duplicate".to_string())
    );
    let published = setup.publisher.published.lock().unwrap();
    assert!(published.values().all(|n| *n == 1), "{published:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_copies_to_the_real_binary_plan_once_and_store_the_plan_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let server = BinaryServer::start(&store, &[], None).await;
    let event = events_of("alerts/arm-ARM_MicroBurst.RunCodeOnBehalf-ce.json").remove(0);
    let client = reqwest::Client::new();
    let deliveries: Vec<_> = (0..COPIES)
        .map(|n| {
            let (client, url, event) = (client.clone(), server.url.clone(), copy(&event, n));
            tokio::spawn(async move { deliver(&client, &url, event, n).await })
        })
        .collect();
    let mut outcomes: HashMap<(u16, String), usize> = HashMap::new();
    for delivery in deliveries {
        *outcomes.entry(delivery.await.unwrap()).or_default() += 1;
    }
    assert_eq!(
        outcomes,
        HashMap::from([
            ((200, "planned".to_string()), 1),
            ((200, "duplicate".to_string()), COPIES - 1)
        ])
    );
    assert!(server.kill().is_none(), "the handler was still running");
    let stored: u64 = EmbeddedStore::open(&store, QueueNames::default())
        .unwrap()
        .counts()
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(stored > 0);
}
