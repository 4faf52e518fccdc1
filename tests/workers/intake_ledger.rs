//! The intake ledger shared by instances, on a real Azurite: two instances (two apps, each with
//! its own embedded queues, sharing one Blob ledger) served over real HTTP race on one alert
//! and plan it once; a crashed instance's claim expires; status changes are recorded; a ledger
//! that cannot be reached is retryable and names its setting.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use defender_responder::adapters::{AlertLedger, BlobLedger, EmbeddedStore, Publisher, QueueNames};
use defender_responder::config::workers::WorkerSettings;
use defender_responder::config::Limits;
use defender_responder::domain::{AlertStatus, Task};
use defender_responder::error::Error;
use defender_responder::journal::BlobJournal;
use defender_responder::pipeline::Pipeline;
use defender_responder::policy::Policy;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use serde_json::{json, Value};

use crate::support::{azurite, azurite_client_options, blob_journal, EntraShapedCredential};

/// A Key Vault alert (Event Grid shape) and its systemAlertId.
fn alert() -> (Value, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alerts/keyvault-KV_SuspiciousIPAccess-egrest.json");
    let events: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let event = events[0].clone();
    let id = event["data"]["properties"]["systemAlertId"]
        .as_str()
        .unwrap()
        .to_string();
    (event, id)
}

/// Copy `n` of an event: a new Event Grid event id, the same alert.
fn copy(event: &Value, n: usize) -> Value {
    let mut event = event.clone();
    event["id"] = json!(format!("copy-{n}"));
    event
}

fn with_status(event: &Value, status: &str) -> Value {
    let mut event = event.clone();
    event["data"]["properties"]["status"] = json!(status);
    event
}

/// The ledger an instance opens from its settings, on the container of `journal`.
fn ledger_on(journal: &BlobJournal, container: Option<&str>) -> BlobLedger {
    let settings = journal.settings();
    let endpoint = settings.endpoint.to_string();
    let container = container.unwrap_or(&settings.container).to_string();
    let lookup = move |name: &str| match name {
        "RESPONDER_JOURNAL_BLOB_ENDPOINT" => Some(endpoint.clone()),
        "RESPONDER_JOURNAL_CONTAINER" => Some(container.clone()),
        _ => None,
    };
    WorkerSettings::from_lookup(&lookup, Path::new("store.sqlite3"))
        .unwrap()
        .journal
        .open_ledger_with(
            Arc::new(EntraShapedCredential),
            Some(azurite_client_options()),
        )
        .unwrap()
        .expect("a Blob journal brings a Blob ledger")
}

/// Stores tasks in an instance's embedded queues, counting every message id published, after
/// a pause that widens any race; the first `failures` publishes fail as a broker outage does.
struct CountingPublisher {
    store: EmbeddedStore,
    pause: Duration,
    failures: AtomicUsize,
    published: Arc<Mutex<HashMap<String, usize>>>,
}

#[async_trait::async_trait]
impl Publisher for CountingPublisher {
    async fn publish(&self, tasks: &[Task]) -> Result<(), Error> {
        tokio::time::sleep(self.pause).await;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::transient("the broker is unreachable (test)"));
        }
        {
            let mut published = self.published.lock().unwrap();
            for task in tasks {
                *published
                    .entry(task.message_id.as_str().to_string())
                    .or_default() += 1;
            }
        }
        self.store.publish(tasks).await
    }

    fn name(&self) -> &'static str {
        "counting"
    }
}

/// One instance of the function app, served over real TCP.
struct Instance {
    url: String,
    store: EmbeddedStore,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Instance {
    async fn start(
        ledger: Arc<dyn AlertLedger>,
        pause: Duration,
        claim_wait: Duration,
        published: &Arc<Mutex<HashMap<String, usize>>>,
    ) -> Instance {
        Self::failing(ledger, pause, claim_wait, published, 0).await
    }

    /// An instance whose first `failures` publishes fail.
    async fn failing(
        ledger: Arc<dyn AlertLedger>,
        pause: Duration,
        claim_wait: Duration,
        published: &Arc<Mutex<HashMap<String, usize>>>,
        failures: usize,
    ) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("store.sqlite3"), QueueNames::default()).unwrap();
        let publisher = Arc::new(CountingPublisher {
            store: store.clone(),
            pause,
            failures: AtomicUsize::new(failures),
            published: published.clone(),
        });
        let state = AppState::new(
            Pipeline::new(Registry::standard(), Policy::default()).with_claim_wait(claim_wait),
            publisher,
            ledger,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(defender_responder::server::serve(
            listener,
            defender_responder::app(state),
            Limits::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Instance {
            url,
            store,
            stop: Some(stop),
            _dir: dir,
        }
    }

    fn stored(&self) -> u64 {
        self.store.counts().unwrap().iter().map(|(_, n)| n).sum()
    }
}

/// Invokes `DefenderAlert` as the Functions host does; the status and the reply's value.
async fn deliver(client: &reqwest::Client, url: &str, event: &Value) -> (u16, Value) {
    let payload = json!({
        "Data": {"event": event},
        "Metadata": {"sys": {"MethodName": "DefenderAlert", "UtcNow": "2025-05-14T07:13:01Z"}}
    });
    let response = client
        .post(format!("{url}/DefenderAlert"))
        .json(&payload)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["ReturnValue"].clone())
}

fn outcome(reply: &Value) -> String {
    reply["outcome"].as_str().unwrap_or("(none)").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_racing_fifty_deliveries_of_one_alert_plan_it_once() {
    let journal = blob_journal().await;
    let published = Arc::new(Mutex::new(HashMap::new()));
    let wait = Duration::from_secs(30);
    let pause = Duration::from_millis(150);
    let a = Instance::start(Arc::new(ledger_on(&journal, None)), pause, wait, &published).await;
    let b = Instance::start(Arc::new(ledger_on(&journal, None)), pause, wait, &published).await;
    let (event, _) = alert();
    let client = reqwest::Client::new();
    let deliveries: Vec<_> = (0..50)
        .map(|n| {
            let url = if n % 2 == 0 { &a.url } else { &b.url }.clone();
            let (client, event) = (client.clone(), copy(&event, n));
            tokio::spawn(async move { deliver(&client, &url, &event).await })
        })
        .collect();
    let mut outcomes: HashMap<(u16, String), usize> = HashMap::new();
    for delivery in deliveries {
        let (status, reply) = delivery.await.unwrap();
        *outcomes.entry((status, outcome(&reply))).or_default() += 1;
    }
    assert_eq!(
        outcomes,
        HashMap::from([
            ((200, "planned".to_string()), 1),
            ((200, "duplicate".to_string()), 49)
        ]),
        "one delivery on one instance plans; every other, on either instance, is a duplicate"
    );
    let published = published.lock().unwrap().clone();
    assert!(!published.is_empty());
    assert!(
        published.values().all(|n| *n == 1),
        "message ids published more than once: {published:?}"
    );
    assert_eq!(
        (a.stored() + b.stored()) as usize,
        published.len(),
        "the plan's tasks are queued on one instance only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instances_claim_expires_and_the_next_delivery_plans() {
    let journal = blob_journal().await;
    let (event, id) = alert();
    let ttl = Duration::from_secs(3);
    // Instance A claims the alert and dies before publishing.
    let crashed = ledger_on(&journal, None).with_claim_ttl(ttl);
    let claimed_at = Instant::now();
    let _held = crashed
        .claims()
        .claim(&id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        crashed
            .claim_and_lookup(&id, Duration::from_secs(1))
            .await
            .unwrap(),
        None
    );
    drop(crashed);
    // Instance B: while the claim lives, a delivery that cannot wait is retryable.
    let published = Arc::new(Mutex::new(HashMap::new()));
    let impatient = Instance::start(
        Arc::new(ledger_on(&journal, None)),
        Duration::ZERO,
        Duration::from_millis(300),
        &published,
    )
    .await;
    let client = reqwest::Client::new();
    let (status, reply) = deliver(&client, &impatient.url, &copy(&event, 1)).await;
    assert_eq!(status, 503, "{reply}");
    assert!(published.lock().unwrap().is_empty());
    // A delivery that may wait past the claim's expiry plans.
    let patient = Instance::start(
        Arc::new(ledger_on(&journal, None)),
        Duration::ZERO,
        Duration::from_secs(20),
        &published,
    )
    .await;
    let (status, reply) = deliver(&client, &patient.url, &copy(&event, 2)).await;
    assert_eq!(
        (status, outcome(&reply)),
        (200, "planned".into()),
        "{reply}"
    );
    assert!(
        claimed_at.elapsed() >= ttl,
        "planned only once the crashed claim expired"
    );
    assert!(patient.stored() > 0);
    let (status, reply) = deliver(&client, &impatient.url, &copy(&event, 3)).await;
    assert_eq!(
        (status, outcome(&reply)),
        (200, "duplicate".into()),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_gives_the_claim_back_so_another_instance_plans_at_once() {
    let journal = blob_journal().await;
    let (event, _) = alert();
    let published = Arc::new(Mutex::new(HashMap::new()));
    let wait = Duration::from_millis(500);
    let broken = Instance::failing(
        Arc::new(ledger_on(&journal, None)),
        Duration::ZERO,
        wait,
        &published,
        1,
    )
    .await;
    let healthy = Instance::start(
        Arc::new(ledger_on(&journal, None)),
        Duration::ZERO,
        wait,
        &published,
    )
    .await;
    let client = reqwest::Client::new();
    let (status, reply) = deliver(&client, &broken.url, &copy(&event, 1)).await;
    assert_eq!(status, 503, "a failed publish is retryable: {reply}");
    // The redelivery reaches the other instance, which need not wait out the claim.
    let (status, reply) = deliver(&client, &healthy.url, &copy(&event, 2)).await;
    assert_eq!(
        (status, outcome(&reply)),
        (200, "planned".into()),
        "{reply}"
    );
    assert_eq!(broken.stored(), 0);
    assert!(healthy.stored() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_are_recorded_for_every_instance_and_planned_stays() {
    let journal = blob_journal().await;
    let (event, id) = alert();
    let published = Arc::new(Mutex::new(HashMap::new()));
    let wait = Duration::from_secs(10);
    let a = Instance::start(
        Arc::new(ledger_on(&journal, None)),
        Duration::ZERO,
        wait,
        &published,
    )
    .await;
    let b = Instance::start(
        Arc::new(ledger_on(&journal, None)),
        Duration::ZERO,
        wait,
        &published,
    )
    .await;
    let observer = ledger_on(&journal, None);
    let client = reqwest::Client::new();

    // An update for an alert no instance planned is recorded, and does not count as planned.
    let other = {
        let mut other = with_status(&event, "InProgress");
        other["data"]["properties"]["systemAlertId"] = json!("never-planned");
        other
    };
    let (status, reply) = deliver(&client, &a.url, &other).await;
    assert_eq!((status, outcome(&reply)), (200, "status_update".into()));
    let seen = observer.lookup("never-planned").await.unwrap().unwrap();
    assert_eq!(
        (seen.status, seen.planned),
        (AlertStatus::InProgress, false)
    );

    let (status, reply) = deliver(&client, &a.url, &copy(&event, 1)).await;
    assert_eq!((status, outcome(&reply)), (200, "planned".into()));
    // Instance B learns it was closed: it knows A planned it, so the people involved are told.
    let (status, reply) = deliver(&client, &b.url, &with_status(&event, "Resolved")).await;
    assert_eq!(
        (status, outcome(&reply)),
        (200, "status_update".into()),
        "{reply}"
    );
    assert!(
        reply["task_count"].as_u64().unwrap() > 0,
        "the closing notification: {reply}"
    );
    let seen = observer.lookup(&id).await.unwrap().unwrap();
    assert_eq!((seen.status, seen.planned), (AlertStatus::Resolved, true));
    // A late copy of the original alert on B is still a duplicate: planned is sticky.
    let (status, reply) = deliver(&client, &b.url, &copy(&event, 2)).await;
    assert_eq!((status, outcome(&reply)), (200, "duplicate".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_it_cannot_reach_is_retryable_and_names_the_setting_and_nothing_is_published() {
    let journal = blob_journal().await;
    let missing = format!("no-such-{}", uuid::Uuid::new_v4().simple());
    let published = Arc::new(Mutex::new(HashMap::new()));
    let instance = Instance::start(
        Arc::new(ledger_on(&journal, Some(&missing))),
        Duration::ZERO,
        Duration::from_secs(5),
        &published,
    )
    .await;
    let (event, _) = alert();
    let (status, reply) = deliver(&reqwest::Client::new(), &instance.url, &event).await;
    assert_eq!(status, 503, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "RESPONDER_JOURNAL_BLOB_ENDPOINT={} and RESPONDER_JOURNAL_CONTAINER={missing}",
            azurite().endpoint
        )),
        "{error}"
    );
    assert!(published.lock().unwrap().is_empty());
    assert_eq!(instance.stored(), 0);
}
