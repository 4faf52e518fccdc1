//! Shared test pieces: a recording loopback webhook receiver with scripted answers, the
//! sample Key Vault alert's tasks, policies with channels, and a journal in a temp dir.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use defender_responder::config::notify::{ChannelSecret, NotifySettings};
use defender_responder::domain::{Queue, Task};
use defender_responder::journal::{Journal, SqliteJournal};
use defender_responder::notify::delivery::RetryPolicy;
use defender_responder::notify::sample;
use defender_responder::notify::Notifier;
use defender_responder::policy::notifications::{
    ChannelKind, ChannelSpec, NotificationPolicy, Route,
};
use defender_responder::policy::Policy;
use serde_json::Value;
use url::Url;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) at: Instant,
    pub(crate) body: Value,
}

/// A scripted answer: the status and an optional `Retry-After`.
type Answer = (u16, Option<String>);

#[derive(Clone, Default)]
struct Shared {
    log: Arc<Mutex<Vec<Received>>>,
    /// (status, Retry-After) answers in order; 200 once used up.
    script: Arc<Mutex<VecDeque<Answer>>>,
}

/// A loopback webhook that records every POST and answers from a script.
pub(crate) struct Receiver {
    pub(crate) url: Url,
    shared: Shared,
    _server: tokio::task::JoinHandle<()>,
}

async fn record(
    State(shared): State<Shared>,
    _headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    shared.log.lock().unwrap().push(Received {
        at: Instant::now(),
        body: parsed,
    });
    let (status, retry_after) = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, None));
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after {
        headers.insert("retry-after", value.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), headers, "1")
}

impl Receiver {
    pub(crate) async fn start(script: &[(u16, Option<&str>)]) -> Receiver {
        let shared = Shared::default();
        shared
            .script
            .lock()
            .unwrap()
            .extend(script.iter().map(|(s, r)| (*s, r.map(str::to_string))));
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url: Url::parse(&format!(
                "http://127.0.0.1:{port}/workflows/abc/triggers/manual/paths/invoke?sig=SECRET"
            ))
            .unwrap(),
            shared,
            _server: server,
        }
    }

    pub(crate) fn log(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }
}

/// The sample Key Vault alert's tasks under `policy`.
pub(crate) fn planned(policy: &Policy) -> Vec<Task> {
    sample::plan(sample::SAMPLE_ALERT.as_bytes(), policy).unwrap()
}

/// Its notification tasks.
pub(crate) fn notifications(tasks: &[Task]) -> Vec<Task> {
    tasks
        .iter()
        .filter(|t| t.queue == Queue::Notification)
        .cloned()
        .collect()
}

/// A policy whose security team is `secops@contoso.com`, with one channel that every
/// recipient is routed to.
pub(crate) fn policy_with(channel: &str, kind: ChannelKind, sender: Option<&str>) -> Policy {
    Policy {
        notify_recipients: vec!["secops@contoso.com".into()],
        notifications: NotificationPolicy {
            channels: vec![ChannelSpec {
                name: channel.into(),
                kind,
                sender: sender.map(str::to_string),
            }],
            routes: vec![Route {
                recipients: vec![],
                min_severity: None,
                queues: vec![],
                channels: vec![channel.into()],
            }],
            default_channels: vec![],
        },
        ..Policy::default()
    }
}

/// Settings holding `secret` for `channel`.
pub(crate) fn settings(channel: &str, secret: ChannelSecret) -> NotifySettings {
    NotifySettings {
        secrets: BTreeMap::from([(channel.to_string(), secret)]),
        journal_url: Url::parse("https://responder.example/api/journal").ok(),
    }
}

/// A chat notifier (Teams or Slack) posting to `receiver`, with short backoffs.
pub(crate) fn chat_notifier(kind: ChannelKind, receiver: &Receiver) -> (Policy, Notifier) {
    let policy = policy_with("chat", kind, None);
    let notifier = Notifier::new(
        &policy,
        &settings("chat", ChannelSecret::Url(receiver.url.clone())),
        None,
        None,
    )
    .unwrap()
    .with_retry(RetryPolicy {
        attempts: 4,
        initial_backoff: std::time::Duration::from_millis(50),
    });
    (policy, notifier)
}

/// A journal in a fresh temp dir (kept alive by the returned guard).
pub(crate) fn journal() -> (Journal, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteJournal::open(&dir.path().join("journal.sqlite3")).unwrap();
    (Journal::new(Arc::new(store)), dir)
}

/// Records the plan's containment tasks in the journal as the isolation and rotation workers
/// would: received, then waiting for a decision on an exact change; returns a desk that signs
/// their links.
pub(crate) async fn seed_pending(
    journal: &Journal,
    tasks: &[Task],
) -> defender_responder::approval::DecisionDesk {
    use defender_responder::domain::TaskStatus;
    for task in tasks.iter().filter(|t| t.queue != Queue::Notification) {
        journal.receive(task, "isolation-worker").await.unwrap();
        if task.status == TaskStatus::PendingApproval {
            let preview = serde_json::json!({"method": "PATCH", "url": task.target, "body": {"properties": {}}});
            journal
                .await_approval(&task.message_id, preview, "isolation-worker")
                .await
                .unwrap();
        }
    }
    defender_responder::approval::DecisionDesk::new(
        journal.clone(),
        defender_responder::approval::ApprovalSettings {
            key: defender_responder::approval::ApprovalKey::parse(
                "a-test-key-of-at-least-thirty-two-characters",
            )
            .unwrap(),
            decision_url: Url::parse("https://responder.example/api/decide").unwrap(),
            ttl: std::time::Duration::from_secs(72 * 3600),
            identity: defender_responder::approval::ApproverIdentity::Link,
            approvers: vec![],
        },
    )
}
