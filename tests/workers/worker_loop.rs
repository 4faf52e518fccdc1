//! The worker loop end to end on the embedded queues and the journal (SQLite, and Blob on
//! Azurite for the race): pending → decision request with signed links → approved through its
//! link over HTTP → carried out once; redeliveries, races, retryable and permanent failures,
//! dry runs; and the Functions host's exact Service Bus and httpTrigger payloads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use defender_responder::adapters::{EmbeddedStore, QueueNames, SharedPublisher};
use defender_responder::approval::{ApprovalKey, ApprovalSettings, ApproverIdentity, DecisionDesk};
use defender_responder::azure::AzureClients;
use defender_responder::config::azure::{AzureSettings, IsolationSettings};
use defender_responder::domain::{Action, AlertRef, Parameters, Queue, Subject, Task};
use defender_responder::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, ExecutorRegistry, PlannedRequest,
    Preview, Undone, Verification, WriteMethod,
};
use defender_responder::journal::{Journal, RawJson, SqliteJournal, TaskState};
use defender_responder::notify::{WebhookChannel, WebhookSecret, WebhookSettings};
use defender_responder::pipeline::Pipeline;
use defender_responder::policy::Policy;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use defender_responder::workers::queue_loop::EmbeddedWorkers;
use defender_responder::workers::{Settlement, Worker};
use serde_json::{json, Value};
use url::Url;

use crate::support::{blob_journal, blob_journal_on, pending_task, Receiver, SECRET};

const KEY: &str = "decision-link-key-for-tests-0123456789abcdef";

/// What the test executor is told to do on `apply`, in order (then `ok`).
#[derive(Default)]
struct Script {
    apply: Mutex<Vec<&'static str>>,
    applied: AtomicUsize,
    previews: AtomicUsize,
    apply_delay: Mutex<Duration>,
}

/// An executor of `enable_key_vault_firewall` that writes nothing real: it counts its applies
/// and fails as scripted. The run's order (preview, journal, lease, apply, verify) is the
/// worker's, which is what is under test.
struct CountingExecutor(Arc<Script>);

#[async_trait]
impl Executor for CountingExecutor {
    fn action(&self) -> Action {
        Action::EnableKeyVaultFirewall
    }

    async fn preview(&self, task: &Task, _ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        self.0.previews.fetch_add(1, Ordering::SeqCst);
        let url = format!(
            "https://management.azure.com{}?api-version=2023-07-01",
            task.target
        );
        Ok(Preview {
            change: Change::new(
                format!(
                    "PATCH {} networkAcls.defaultAction Allow -> Deny",
                    task.target
                ),
                vec![PlannedRequest::new(
                    defender_responder::azure::Api::Arm,
                    WriteMethod::Patch,
                    url,
                    Some(json!({"properties": {"networkAcls": {"defaultAction": "Deny"}}})),
                )],
            ),
            prior_state: json!({"networkAcls": {"defaultAction": "Allow"}}),
            leases: vec![task.target.to_ascii_lowercase()],
            subscriptions: vec![],
        })
    }

    async fn apply(
        &self,
        _task: &Task,
        _preview: &Preview,
        _ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let delay = *self.0.apply_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let next = {
            let mut script = self.0.apply.lock().unwrap();
            if script.is_empty() {
                "ok"
            } else {
                script.remove(0)
            }
        };
        match next {
            "retry" => Err(ExecutorError::Retryable {
                reason: "ARM answered 429".into(),
                retry_after: Some(Duration::ZERO),
            }),
            "permanent" => Err(ExecutorError::Permanent("the vault is gone (404)".into())),
            _ => {
                self.0.applied.fetch_add(1, Ordering::SeqCst);
                Ok(Applied::default())
            }
        }
    }

    async fn verify(
        &self,
        _task: &Task,
        _preview: &Preview,
        _applied: &Applied,
        _ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        Ok(Verification::default().check("defaultAction", json!("Deny"), json!("Deny")))
    }

    async fn undo(
        &self,
        _task: &Task,
        _preview: &Preview,
        _applied: &Applied,
        _ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        Ok(Undone::default())
    }
}

fn context() -> ExecutorContext {
    let clients = AzureClients::new(
        &AzureSettings::on_one_host("http://127.0.0.1:9"),
        Arc::new(crate::support::EntraShapedCredential),
    )
    .unwrap();
    ExecutorContext::new(
        clients,
        IsolationSettings::from_lookup(&|_: &str| None, &[]).unwrap(),
    )
}

fn worker(
    journal: Journal,
    publisher: SharedPublisher,
    script: &Arc<Script>,
    name: &str,
) -> Worker {
    let mut registry = ExecutorRegistry::empty();
    registry.register(Arc::new(CountingExecutor(script.clone())));
    // The counting executor does not act on Azure: no alert to read back from Defender.
    Worker::new(journal, publisher)
        .with_executors(registry, context())
        .trusting_alerts()
        .with_instance(name)
}

fn ready_task(target: &str) -> Task {
    Task::example(
        &AlertRef::sample("sys-loop"),
        Action::EnableKeyVaultFirewall,
        &["KV-2a"],
        target,
        "the vault was read from an address it has never seen",
    )
}

struct Fixture {
    store: EmbeddedStore,
    journal: Journal,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("store.sqlite3"), QueueNames::default()).unwrap();
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("store.journal.sqlite3")).unwrap(),
    ));
    Fixture {
        store,
        journal,
        _dir: dir,
    }
}

async fn state_of(journal: &Journal, task: &Task) -> TaskState {
    journal.get(&task.message_id).await.unwrap().unwrap().state
}

#[tokio::test]
async fn a_ready_task_runs_once_and_a_redelivery_runs_nothing_again() {
    let f = fixture();
    let script = Arc::new(Script::default());
    let worker = worker(f.journal.clone(), Arc::new(f.store.clone()), &script, "w1");
    let task = ready_task("kv-once");
    let body = serde_json::to_value(&task).unwrap();
    let first = worker.process(Queue::Isolation, &body).await;
    assert!(matches!(first, Settlement::Complete { .. }), "{first:?}");
    let again = worker.process(Queue::Isolation, &body).await;
    assert!(again.describe().contains("done"), "{again:?}");
    assert_eq!(script.applied.load(Ordering::SeqCst), 1);
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Done);
    assert_eq!(
        entry.prior_state,
        Some(RawJson::from(
            json!({"networkAcls": {"defaultAction": "Allow"}})
        ))
    );
    let states: Vec<TaskState> = entry.history.iter().map(|event| event.to).collect();
    assert_eq!(
        states,
        [TaskState::Received, TaskState::Running, TaskState::Done]
    );
}

#[tokio::test]
async fn a_body_as_a_json_string_holding_json_is_the_same_task() {
    let f = fixture();
    let script = Arc::new(Script::default());
    let worker = worker(f.journal.clone(), Arc::new(f.store.clone()), &script, "w1");
    let task = ready_task("kv-string");
    let body = Value::String(serde_json::to_string(&task).unwrap());
    let settled = worker.process(Queue::Isolation, &body).await;
    assert!(
        matches!(settled, Settlement::Complete { .. }),
        "{settled:?}"
    );
    assert_eq!(state_of(&f.journal, &task).await, TaskState::Done);
    let refused = worker.process(Queue::Isolation, &json!([1, 2])).await;
    assert!(matches!(refused, Settlement::Reject { .. }), "{refused:?}");
    let wrong_queue = worker
        .process(Queue::Rotation, &serde_json::to_value(&task).unwrap())
        .await;
    assert!(
        matches!(wrong_queue, Settlement::Reject { .. }),
        "{wrong_queue:?}"
    );
}

async fn race(journal_a: Journal, journal_b: Journal, store: EmbeddedStore) {
    let script = Arc::new(Script::default());
    *script.apply_delay.lock().unwrap() = Duration::from_millis(400);
    let a = worker(
        journal_a.clone(),
        Arc::new(store.clone()),
        &script,
        "instance-a",
    );
    let b = worker(journal_b, Arc::new(store), &script, "instance-b");
    let task = ready_task(&format!("kv-race-{}", uuid::Uuid::new_v4().simple()));
    let body = serde_json::to_value(&task).unwrap();
    let (one, two) = tokio::join!(
        a.process(Queue::Isolation, &body),
        b.process(Queue::Isolation, &body)
    );
    let retried = [&one, &two].iter().filter(|s| s.is_retry()).count();
    assert_eq!(
        retried, 1,
        "one runs, the other sees it running: {one:?} / {two:?}"
    );
    assert_eq!(script.applied.load(Ordering::SeqCst), 1);
    assert_eq!(state_of(&journal_a, &task).await, TaskState::Done);
    // The loser's redelivery sees it done.
    let later = b.process(Queue::Isolation, &body).await;
    assert!(later.describe().contains("done"), "{later:?}");
    assert_eq!(script.applied.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn two_workers_racing_for_one_task_run_it_once_on_sqlite() {
    let f = fixture();
    race(f.journal.clone(), f.journal.clone(), f.store.clone()).await;
}

#[tokio::test]
async fn two_instances_racing_for_one_task_run_it_once_on_the_blob_journal() {
    let f = fixture();
    let first = blob_journal().await;
    let second = blob_journal_on(&first);
    race(
        Journal::new(Arc::new(first)),
        Journal::new(Arc::new(second)),
        f.store.clone(),
    )
    .await;
}

#[tokio::test]
async fn a_retryable_failure_is_abandoned_and_a_later_delivery_completes() {
    let f = fixture();
    let script = Arc::new(Script::default());
    script.apply.lock().unwrap().push("retry");
    let worker = Arc::new(worker(
        f.journal.clone(),
        Arc::new(f.store.clone()),
        &script,
        "w1",
    ));
    let task = ready_task("kv-retry");
    f.store.enqueue(std::slice::from_ref(&task)).unwrap();
    let workers = EmbeddedWorkers::new(f.store.clone(), worker).with_retry_delay(Duration::ZERO);
    let report = workers.drain(Queue::Isolation).await.unwrap();
    // The first delivery failed retryably and was given back; the drain received it again.
    assert_eq!((report.retried, report.completed), (1, 1), "{report:?}");
    assert!(report.outcomes[1].contains("delivery 2"), "{report:?}");
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Done);
    assert_eq!(entry.attempts, 2);
    assert_eq!(script.applied.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_permanent_failure_is_completed_with_its_reason_recorded() {
    let f = fixture();
    let script = Arc::new(Script::default());
    script.apply.lock().unwrap().push("permanent");
    let worker = Arc::new(worker(
        f.journal.clone(),
        Arc::new(f.store.clone()),
        &script,
        "w1",
    ));
    let task = ready_task("kv-gone");
    f.store.enqueue(std::slice::from_ref(&task)).unwrap();
    let workers = EmbeddedWorkers::new(f.store.clone(), worker).with_retry_delay(Duration::ZERO);
    let report = workers.drain(Queue::Isolation).await.unwrap();
    assert_eq!((report.retried, report.completed), (0, 1), "{report:?}");
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Failed);
    assert_eq!(entry.retryable, Some(false));
    assert!(entry
        .error
        .as_deref()
        .unwrap()
        .contains("the vault is gone"));
    assert_eq!(f.store.dead_letter_count(Queue::Isolation).unwrap(), 0);
    assert!(workers
        .drain(Queue::Isolation)
        .await
        .unwrap()
        .outcomes
        .is_empty());
}

#[tokio::test]
async fn a_dry_run_journals_the_exact_change_and_writes_nothing() {
    let f = fixture();
    let script = Arc::new(Script::default());
    let worker = worker(f.journal.clone(), Arc::new(f.store.clone()), &script, "w1");
    let mut task = ready_task("kv-dry");
    task.dry_run = true;
    let settled = worker
        .process(Queue::Isolation, &serde_json::to_value(&task).unwrap())
        .await;
    assert!(settled.describe().contains("would"), "{settled:?}");
    assert_eq!(script.applied.load(Ordering::SeqCst), 0);
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Done);
    assert_eq!(entry.result.as_ref().unwrap().to_value()["dry_run"], true);
    assert_eq!(
        entry.preview.as_ref().unwrap().to_value()["change"]["requests"][0]["method"],
        "PATCH"
    );
    assert_eq!(
        entry.preview.as_ref().unwrap().to_value()["task"]["message_id"],
        task.message_id.as_str()
    );
    // The global setting makes a live task a dry run too.
    let global = worker.clone().with_dry_run(true);
    let live = ready_task("kv-dry-global");
    global
        .process(Queue::Isolation, &serde_json::to_value(&live).unwrap())
        .await;
    assert_eq!(script.applied.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_action_without_an_executor_is_recorded_as_not_automated() {
    let f = fixture();
    let worker = Worker::new(f.journal.clone(), Arc::new(f.store.clone()));
    let task = ready_task("kv-manual");
    let settled = worker
        .process(Queue::Isolation, &serde_json::to_value(&task).unwrap())
        .await;
    assert!(
        matches!(settled, Settlement::Complete { .. }),
        "{settled:?}"
    );
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::NotAutomated);
    assert!(entry.result.unwrap().to_value()["note"]
        .as_str()
        .unwrap()
        .contains("a person must do it"));
}

/// The decision request for one pending task.
fn decision_request(pending: &Task) -> Task {
    Task::new(
        &pending.alert,
        Parameters::RequestDecision {
            subject: Subject::Name("kv-pending".into()),
            pending: vec![pending.message_id.clone()],
            notify_only: vec![],
        },
        &["KV-2a"],
        "approve closing the vault's firewall",
    )
    .recipients(["owner@contoso.com"])
}

struct App {
    base: String,
    store: EmbeddedStore,
    journal: Journal,
    workers: EmbeddedWorkers,
    script: Arc<Script>,
    receiver: Receiver,
    _dir: tempfile::TempDir,
}

/// The real HTTP app with the workers, decision links and the webhook channel, on a free port.
async fn app() -> App {
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("store.sqlite3"), QueueNames::default()).unwrap();
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("store.journal.sqlite3")).unwrap(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let desk = DecisionDesk::new(
        journal.clone(),
        ApprovalSettings {
            key: ApprovalKey::parse(KEY).unwrap(),
            decision_url: Url::parse(&format!("{base}/api/decide")).unwrap(),
            ttl: Duration::from_secs(3600),
            identity: ApproverIdentity::Link,
            approvers: vec![],
        },
    );
    let channel = WebhookChannel::new(WebhookSettings {
        url: receiver.url(),
        secret: WebhookSecret::parse(SECRET).unwrap(),
        attempts: 3,
        timeout: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(50),
    })
    .unwrap();
    let script = Arc::new(Script::default());
    let publisher: SharedPublisher = Arc::new(store.clone());
    let state = AppState::new(
        Pipeline::new(Registry::standard(), Policy::default()),
        publisher.clone(),
        Arc::new(store.clone()),
    )
    .with_decisions(desk);
    let worker = worker(journal.clone(), publisher, &script, "app")
        .with_webhook(Some(channel))
        .with_decisions(state.decisions.clone());
    let state = state.with_worker(worker.clone(), Duration::from_secs(3600));
    tokio::spawn(async move {
        axum::serve(listener, defender_responder::app(state))
            .await
            .unwrap()
    });
    let workers =
        EmbeddedWorkers::new(store.clone(), Arc::new(worker)).with_retry_delay(Duration::ZERO);
    App {
        base,
        store,
        journal,
        workers,
        script,
        receiver,
        _dir: dir,
    }
}

#[tokio::test]
async fn pending_then_approved_through_its_link_then_carried_out_once() {
    let app = app().await;
    let pending = pending_task("sys-flow", "/subscriptions/s/kv-flow");
    let request = decision_request(&pending);
    // The decision request first: it waits until the pending task has recorded its change.
    app.store
        .enqueue(&[request.clone(), pending.clone()])
        .unwrap();
    let report = app.workers.drain_all().await.unwrap();
    assert_eq!(report.completed, 2, "{report:?}");
    assert_eq!(
        state_of(&app.journal, &pending).await,
        TaskState::PendingApproval
    );
    assert_eq!(app.script.applied.load(Ordering::SeqCst), 0);
    let log = app.receiver.log().await;
    let event = log
        .iter()
        .find(|record| record["webhook_id"] == request.message_id.as_str())
        .expect("the decision request was delivered");
    assert_eq!(event["verified"], true);
    let approve = event["body"]["data"]["decisions"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        approve.starts_with(&format!("{}/api/decide?", app.base)),
        "{approve}"
    );

    // GET decides nothing; POST through the Decision httpTrigger (the host's Data.req) decides.
    let url = Url::parse(&approve).unwrap();
    let page = reqwest::get(url.as_str()).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        state_of(&app.journal, &pending).await,
        TaskState::PendingApproval
    );
    let form = url.query().unwrap().to_string();
    let invocation = json!({"Data": {"req": {
        "Url": format!("{}/api/decide", app.base), "Method": "POST",
        "Query": {}, "Headers": {"Content-Type": ["application/x-www-form-urlencoded"]},
        "Params": {}, "Body": form }}, "Metadata": {"sys": {}}});
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/Decision", app.base))
        .json(&invocation)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["Outputs"]["res"]["statusCode"], 200, "{reply}");
    assert!(reply["Outputs"]["res"]["headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(state_of(&app.journal, &pending).await, TaskState::Approved);

    // The approved copy is on the queue under the derived id; the next drain runs it, once.
    let report = app.workers.drain_all().await.unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    assert!(report.outcomes[0].starts_with(&format!("{}-approved", pending.message_id)));
    assert_eq!(app.script.applied.load(Ordering::SeqCst), 1);
    let entry = app.journal.get(&pending.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Done);
    assert_eq!(entry.decision.unwrap().by, "link");
    // A second POST of the same link is refused, and queues nothing.
    let again = reqwest::Client::new()
        .post(format!("{}/api/decide", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert!(app.workers.drain_all().await.unwrap().outcomes.is_empty());
}

#[tokio::test]
async fn service_bus_invocations_settle_from_the_reply() {
    let app = app().await;
    let task = ready_task("/subscriptions/s/kv-host");
    // functions-host.md §2.3: the body double-encoded, Metadata scalars as strings.
    let invocation = |delivery: &str| {
        json!({
            "Data": { "message": serde_json::to_string(&serde_json::to_string(&task).unwrap()).unwrap() },
            "Metadata": {
                "MessageReceiver": {}, "MessageActions": {},
                "DeliveryCount": delivery,
                "LockToken": "\"0d1e\"",
                "EnqueuedTimeUtc": "2025-01-02T03:04:05",
                "MessageId": format!("\"{}\"", task.message_id),
                "CorrelationId": format!("\"{}\"", task.alert.system_alert_id),
                "ApplicationProperties": { "action": task.action.as_str() },
                "sys": { "MethodName": "IsolationWorker", "UtcNow": "2025-01-02T03:04:06.5Z" }
            }
        })
    };
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let client = client.clone();
        let url = format!("{}/IsolationWorker", app.base);
        async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    app.script.apply.lock().unwrap().push("retry");
    let (status, reply) = post(invocation("1")).await;
    assert_eq!(status, 503, "a retryable failure abandons: {reply}");
    let (status, reply) = post(invocation("2")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ReturnValue"]["delivery_count"], 2);
    assert_eq!(reply["ReturnValue"]["message_id"], task.message_id.as_str());
    let (status, reply) = post(invocation("3")).await;
    assert_eq!(status, 200, "a redelivery completes: {reply}");
    assert_eq!(app.script.applied.load(Ordering::SeqCst), 1);
    // Not a task: completed (no poison loop), with the reason in the log lines.
    let (status, reply) = post(json!({"Data": {"message": "\"[1,2]\""}, "Metadata": {}})).await;
    assert_eq!(status, 200);
    assert!(
        reply["Logs"][0].as_str().unwrap().contains("not a task"),
        "{reply}"
    );
    // The sweeper's timer.
    let sweep = client
        .post(format!("{}/DecisionSweeper", app.base))
        .json(&json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "IsPastDue": false}}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sweep.status(), 200);
}

#[tokio::test]
async fn the_sweeper_expires_a_decision_that_did_not_come_in_time() {
    let f = fixture();
    let worker = Worker::new(f.journal.clone(), Arc::new(f.store.clone()));
    let task = pending_task("sys-stale", "/subscriptions/s/kv-stale");
    worker
        .process(Queue::Isolation, &serde_json::to_value(&task).unwrap())
        .await;
    assert_eq!(
        state_of(&f.journal, &task).await,
        TaskState::PendingApproval
    );
    let kept = defender_responder::workers::sweeper::sweep(&worker, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(kept.expired.is_empty());
    let swept = defender_responder::workers::sweeper::sweep(&worker, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept.expired, [task.message_id.to_string()]);
    assert_eq!(state_of(&f.journal, &task).await, TaskState::Expired);
}
