//! Follow-ups and the sweeper's queries against the SQLite journal: scheduled with the done
//! record, found by due time and by state however many entries there are, claimed by exactly
//! one of two racing sweepers, settled, retried, failed for good, cancelled by an undo.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::domain::ids::SecretUri;
use crate::domain::{Action, AlertRef, TaskStatus};
use crate::executors::{FollowUp, FollowUpStep};

fn task(label: &str) -> Task {
    let mut task = Task::example(
        &AlertRef::sample(&format!("sys-{label}")),
        Action::DisableSecret,
        &["KV-4a"],
        label,
        "the secret was read from an unusual address",
    );
    task.status = TaskStatus::Ready;
    task
}

fn follow_up(not_before: i64) -> FollowUp {
    FollowUp {
        not_before,
        step: FollowUpStep::DisableSecretVersions {
            secret: SecretUri::parse("https://kv-a.vault.azure.net/secrets/db-password").unwrap(),
            versions: vec!["0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5".into()],
            replacement: Some("9f8e7d6c5b4a43210fedcba987654321".into()),
        },
    }
}

fn open(path: &std::path::Path) -> Journal {
    Journal::new(Arc::new(SqliteJournal::open(path).unwrap()))
}

/// A task run to `done` with a follow-up due at `not_before`.
async fn done_with_follow_up(journal: &Journal, task: &Task, not_before: i64) -> JournalEntry {
    journal.receive(task, "worker").await.unwrap();
    journal.begin_run(&task.message_id, "worker").await.unwrap();
    journal
        .finish_scheduling(
            &task.message_id,
            RunOutcome::Done {
                result: json!({"sent": []}),
                verification: json!(null),
            },
            Some(ScheduledFollowUp::new(task, follow_up(not_before))),
            "worker",
        )
        .await
        .unwrap()
}

fn due_ids(entries: &[JournalEntry]) -> Vec<String> {
    entries.iter().map(|e| e.message_id.to_string()).collect()
}

#[tokio::test]
async fn the_done_record_schedules_the_follow_up_and_only_a_due_one_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(&dir.path().join("j.sqlite3"));
    let task = task("a");
    let entry = done_with_follow_up(&journal, &task, 1_000).await;
    assert_eq!(entry.state, TaskState::Done);
    // One write: the done transition carries the follow-up.
    assert_eq!(entry.history.last().unwrap().to, TaskState::Done);
    let scheduled = entry.follow_up.unwrap();
    assert_eq!(scheduled.due_at, Some(1_000));
    assert_eq!(scheduled.task, task);
    assert!(journal.follow_ups_due(999, 10).await.unwrap().is_empty());
    assert_eq!(
        due_ids(&journal.follow_ups_due(1_000, 10).await.unwrap()),
        [task.message_id.to_string()]
    );
}

#[test]
fn two_sweepers_racing_for_a_follow_up_give_exactly_one_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite3");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Two opens of one file: two instances' sweepers.
        let a = open(&path);
        let b = open(&path);
        for round in 0..20 {
            let task = task(&format!("race-{round}"));
            done_with_follow_up(&a, &task, 100).await;
            let (ra, rb) = tokio::join!(
                tokio::spawn({
                    let a = a.clone();
                    let id = task.message_id.clone();
                    async move { a.claim_follow_up(&id, 100, "sweeper-a").await }
                }),
                tokio::spawn({
                    let b = b.clone();
                    let id = task.message_id.clone();
                    async move { b.claim_follow_up(&id, 100, "sweeper-b").await }
                }),
            );
            let claims = [ra.unwrap().unwrap(), rb.unwrap().unwrap()];
            assert_eq!(
                claims.iter().filter(|c| c.is_some()).count(),
                1,
                "round {round}: {claims:?}"
            );
            let entry = a.get(&task.message_id).await.unwrap().unwrap();
            assert_eq!(entry.follow_up.unwrap().attempts, 1);
        }
    });
}

#[tokio::test]
async fn a_claim_hides_the_follow_up_until_it_lapses_and_then_the_old_claim_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(&dir.path().join("j.sqlite3"));
    let task = task("lapse");
    done_with_follow_up(&journal, &task, 100).await;
    let first = journal
        .claim_follow_up(&task.message_id, 100, "sweeper-1")
        .await
        .unwrap()
        .expect("claimed");
    let lapse = 100 + journal.run_timeout().as_secs() as i64;
    assert!(journal
        .follow_ups_due(lapse - 1, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(journal
        .claim_follow_up(&task.message_id, lapse - 1, "sweeper-2")
        .await
        .unwrap()
        .is_none());
    // Its sweeper died: after the run timeout another takes it over.
    assert_eq!(journal.follow_ups_due(lapse, 10).await.unwrap().len(), 1);
    let second = journal
        .claim_follow_up(&task.message_id, lapse, "sweeper-2")
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(second.attempts, 2);
    let late = journal
        .settle_follow_up(
            &task.message_id,
            &first.claim.unwrap().id,
            FollowUpOutcome::Done {
                summary: "late".into(),
                next: None,
            },
            "sweeper-1",
        )
        .await
        .unwrap();
    assert!(late.is_none(), "a lapsed claim records nothing");
    let entry = journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(
        entry.follow_up.unwrap().claim.unwrap().by,
        "sweeper-2",
        "still the second sweeper's"
    );
}

#[tokio::test]
async fn settling_records_the_result_the_next_step_a_retry_and_a_permanent_failure() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(&dir.path().join("j.sqlite3"));
    let task = task("settle");
    let id = &task.message_id;
    done_with_follow_up(&journal, &task, 100).await;
    let claim = |now: i64| {
        let journal = journal.clone();
        let id = id.clone();
        async move {
            journal
                .claim_follow_up(&id, now, "sweeper")
                .await
                .unwrap()
                .expect("claimed")
                .claim
                .unwrap()
                .id
        }
    };
    let claim_id = claim(100).await;
    let entry = journal
        .settle_follow_up(
            id,
            &claim_id,
            FollowUpOutcome::Done {
                summary: "PATCH https://kv-a.vault.azure.net/secrets/db-password/0c1d (200)".into(),
                next: Some(follow_up(500)),
            },
            "sweeper",
        )
        .await
        .unwrap()
        .unwrap();
    let note = entry.history.last().unwrap().note.clone().unwrap();
    assert!(
        note.contains("disable_secret_versions done: PATCH"),
        "{note}"
    );
    assert_eq!(entry.state, TaskState::Done, "a follow-up changes no state");
    assert_eq!(entry.follow_up.as_ref().unwrap().due_at, Some(500));
    assert_eq!(entry.follow_up.as_ref().unwrap().attempts, 0, "a new step");

    let claim_id = claim(500).await;
    let entry = journal
        .settle_follow_up(
            id,
            &claim_id,
            FollowUpOutcome::Retry {
                error: "throttled".into(),
                at: 560,
            },
            "sweeper",
        )
        .await
        .unwrap()
        .unwrap();
    let scheduled = entry.follow_up.unwrap();
    assert_eq!(scheduled.due_at, Some(560));
    assert_eq!(scheduled.error.as_deref(), Some("throttled"));
    assert!(journal.follow_ups_due(559, 10).await.unwrap().is_empty());

    let claim_id = claim(560).await;
    let entry = journal
        .settle_follow_up(
            id,
            &claim_id,
            FollowUpOutcome::Failed {
                error: "forbidden".into(),
            },
            "sweeper",
        )
        .await
        .unwrap()
        .unwrap();
    let scheduled = entry.follow_up.unwrap();
    assert_eq!(scheduled.due_at, None);
    assert_eq!(scheduled.error.as_deref(), Some("forbidden"));
    assert!(entry
        .history
        .last()
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("failed for good: forbidden"));
    assert!(journal
        .follow_ups_due(i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_undone_task_cancels_its_follow_up() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(&dir.path().join("j.sqlite3"));
    let task = task("undo");
    done_with_follow_up(&journal, &task, 100).await;
    journal
        .undone(&task.message_id, json!({"restored": true}), "operator:me")
        .await
        .unwrap();
    assert!(journal
        .claim_follow_up(&task.message_id, 100, "sweeper")
        .await
        .unwrap()
        .is_none());
    let entry = journal.get(&task.message_id).await.unwrap().unwrap();
    assert!(entry.follow_up.is_none());
    assert!(entry
        .history
        .last()
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("cancelled: the task is undone"));
}

#[tokio::test]
async fn the_sweeper_queries_find_old_entries_among_thousands_of_newer_ones() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(&dir.path().join("j.sqlite3"));
    let mut pending = task("old-pending");
    pending.status = TaskStatus::PendingApproval;
    journal.receive(&pending, "worker").await.unwrap();
    journal
        .await_approval(&pending.message_id, json!({"task": pending}), "worker")
        .await
        .unwrap();
    let scheduled = task("old-follow-up");
    done_with_follow_up(&journal, &scheduled, 100).await;
    for n in 0..5_000 {
        journal
            .receive(&task(&format!("newer-{n}")), "worker")
            .await
            .unwrap();
    }
    let recent = journal.recent(1_000).await.unwrap();
    assert!(
        !recent.iter().any(|e| e.message_id == pending.message_id),
        "the old entry is outside the recent window"
    );
    assert_eq!(
        due_ids(&journal.in_state(TaskState::PendingApproval).await.unwrap()),
        [pending.message_id.to_string()]
    );
    assert_eq!(
        due_ids(&journal.follow_ups_due(100, 10).await.unwrap()),
        [scheduled.message_id.to_string()]
    );
    assert!(journal
        .in_state(TaskState::Approved)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_journal_from_before_follow_ups_gets_the_column_and_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE journal (message_id TEXT PRIMARY KEY, system_alert_id TEXT NOT NULL,
             state TEXT NOT NULL, version INTEGER NOT NULL, received_at TEXT NOT NULL,
             updated_at TEXT NOT NULL, entry TEXT NOT NULL);",
        )
        .unwrap();
    }
    let journal = open(&path);
    let task = task("migrated");
    done_with_follow_up(&journal, &task, 100).await;
    assert_eq!(journal.follow_ups_due(100, 10).await.unwrap().len(), 1);
    let indexed: bool = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'journal_by_follow_up'",
        )
        .unwrap()
        .exists([])
        .unwrap();
    assert!(indexed);
    // Opening it again (another process) changes nothing.
    open(&path);
}
