//! The sweeper over the journal's indexes: a decision timeout that escalates once and then
//! expires, one that proceeds where the policy says so, and work found among thousands of
//! newer entries (beyond any recent-entries window).

use std::sync::Arc;
use std::time::Duration;

use defender_responder::adapters::{EmbeddedStore, QueueNames};
use defender_responder::domain::{Action, AlertRef, Parameters, Queue, Task, TaskStatus};
use defender_responder::executors::rotation::{FollowUp, FollowUpStep};
use defender_responder::journal::{
    Journal, RunOutcome, ScheduledFollowUp, SqliteJournal, TaskState,
};
use defender_responder::policy::file::parse_policy;
use defender_responder::services::Registry;
use defender_responder::workers::sweeper::sweep;
use defender_responder::workers::Worker;
use serde_json::json;

use crate::support::pending_task;

const HOUR: Duration = Duration::from_secs(3600);

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

fn worker_with_policy(f: &Fixture, policy: &str) -> Worker {
    let policy = parse_policy(policy, &Registry::standard().steps()).unwrap();
    Worker::new(f.journal.clone(), Arc::new(f.store.clone())).with_timeout_policy(policy)
}

async fn make_pending(worker: &Worker, task: &Task) {
    worker
        .process(Queue::Isolation, &serde_json::to_value(task).unwrap())
        .await;
    let entry = worker
        .journal()
        .get(&task.message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.state, TaskState::PendingApproval);
}

#[tokio::test]
async fn an_escalating_timeout_asks_the_named_people_once_then_expires() {
    let f = fixture();
    let worker = worker_with_policy(
        &f,
        r#"{"decisions": {"on_timeout": "escalate", "escalate_to": ["secops-lead@contoso.com"]}}"#,
    );
    let task = pending_task("sys-escalate", "/subscriptions/s/kv-escalate");
    make_pending(&worker, &task).await;

    let first = sweep(&worker, Duration::ZERO).await.unwrap();
    assert_eq!(first.escalated, [task.message_id.to_string()]);
    assert!(first.expired.is_empty());
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::PendingApproval, "still waiting");
    assert_eq!(
        entry.escalation.as_ref().unwrap().to,
        ["secops-lead@contoso.com"]
    );
    assert!(
        entry
            .recipients
            .contains(&"secops-lead@contoso.com".to_string()),
        "the escalation recipient may decide"
    );
    // A decision request for this task alone, to the escalation recipient.
    let queued = f.store.peek(Queue::Notification, 10).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].message_id,
        format!("{}-escalation", task.message_id)
    );
    let request: Task = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(request.recipients, ["secops-lead@contoso.com"]);
    let Parameters::RequestDecision { pending, .. } = &request.parameters else {
        panic!("not a decision request: {request:?}");
    };
    assert_eq!(pending, std::slice::from_ref(&task.message_id));

    // The second timeout counts from the escalation.
    let waiting = sweep(&worker, HOUR).await.unwrap();
    assert!(waiting.expired.is_empty() && waiting.escalated.is_empty());
    let second = sweep(&worker, Duration::ZERO).await.unwrap();
    assert_eq!(second.expired, [task.message_id.to_string()]);
    assert!(second.escalated.is_empty(), "escalated once only");
    assert_eq!(f.store.peek(Queue::Notification, 10).unwrap().len(), 1);
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Expired);
}

#[tokio::test]
async fn a_proceeding_timeout_approves_as_timeout_and_queues_the_task() {
    let f = fixture();
    let worker = worker_with_policy(
        &f,
        r#"{"automation": [{"action": "enable_key_vault_firewall", "mode": "approval", "on_timeout": "proceed"}]}"#,
    );
    let task = pending_task("sys-proceed", "/subscriptions/s/kv-proceed");
    make_pending(&worker, &task).await;
    assert!(sweep(&worker, HOUR).await.unwrap().proceeded.is_empty());
    let swept = sweep(&worker, Duration::ZERO).await.unwrap();
    assert_eq!(swept.proceeded, [task.message_id.to_string()]);
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Approved);
    let decision = entry.decision.unwrap();
    assert_eq!(
        decision.by, "timeout",
        "recorded as approved by the timeout"
    );
    let queued = f.store.peek(Queue::Isolation, 10).unwrap();
    assert!(
        queued
            .iter()
            .any(|m| m.message_id == format!("{}-approved", task.message_id)),
        "{queued:?}"
    );
}

#[tokio::test]
async fn the_default_timeout_expires_and_never_proceeds() {
    let f = fixture();
    let worker = worker_with_policy(&f, "{}");
    let task = pending_task("sys-default", "/subscriptions/s/kv-default");
    make_pending(&worker, &task).await;
    let swept = sweep(&worker, Duration::ZERO).await.unwrap();
    assert_eq!(swept.expired, [task.message_id.to_string()]);
    assert!(swept.proceeded.is_empty() && swept.escalated.is_empty());
}

#[tokio::test]
async fn the_sweeper_finds_its_work_among_thousands_of_newer_entries() {
    let f = fixture();
    let worker = worker_with_policy(&f, "{}");
    let pending = pending_task("sys-old", "/subscriptions/s/kv-old");
    make_pending(&worker, &pending).await;
    // A follow-up due long ago, of a task no executor here carries out (tried again later).
    let mut done = Task::example(
        &AlertRef::sample("sys-old-rotation"),
        Action::DisableSecret,
        &["KV-4a"],
        "old-secret",
        "read from an unusual address",
    );
    done.status = TaskStatus::Ready;
    f.journal.receive(&done, "worker").await.unwrap();
    f.journal
        .begin_run(&done.message_id, "worker")
        .await
        .unwrap();
    let Parameters::DisableSecret { secret, .. } = &done.parameters else {
        unreachable!()
    };
    let follow_up = FollowUp {
        not_before: 1,
        step: FollowUpStep::DisableSecretVersions {
            secret: secret.clone(),
            versions: vec!["0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5".into()],
            replacement: None,
        },
    };
    f.journal
        .finish_scheduling(
            &done.message_id,
            RunOutcome::Done {
                result: json!({}),
                verification: json!(null),
            },
            Some(ScheduledFollowUp::new(&done, follow_up)),
            "worker",
        )
        .await
        .unwrap();
    for n in 0..5_000 {
        let task = pending_task(&format!("sys-new-{n}"), &format!("/subscriptions/s/kv-{n}"));
        f.journal.receive(&task, "worker").await.unwrap();
    }
    let recent = f.journal.recent(1_000).await.unwrap();
    assert!(!recent.iter().any(|e| e.message_id == pending.message_id));
    assert!(!recent.iter().any(|e| e.message_id == done.message_id));

    let swept = sweep(&worker, Duration::ZERO).await.unwrap();
    assert_eq!(swept.expired, [pending.message_id.to_string()]);
    assert_eq!(
        swept.follow_ups_retried,
        [format!("{}:disable_secret_versions", done.message_id)]
    );
    let entry = f.journal.get(&done.message_id).await.unwrap().unwrap();
    let scheduled = entry.follow_up.unwrap();
    assert!(scheduled
        .error
        .unwrap()
        .contains("no executor carries out disable_secret"));
    assert!(scheduled.due_at.unwrap() > 1, "tried again later");
}
