//! The journal's rules against the embedded SQLite store (the Blob store runs the same rules
//! against Azurite in tests/journal).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::domain::{Action, AlertRef, TaskStatus};

fn task(target: &str) -> Task {
    let mut task = Task::example(
        &AlertRef::sample("sys-1"),
        Action::EnableKeyVaultFirewall,
        &["KV-2a"],
        target,
        "vault accessed from an unusual address",
    );
    task.status = TaskStatus::PendingApproval;
    task.recipients = vec!["owner@contoso.com".into()];
    task
}

fn journal(dir: &tempfile::TempDir) -> Journal {
    Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("journal.sqlite3")).unwrap(),
    ))
}

#[test]
fn only_the_documented_transitions_are_legal() {
    use TaskState::*;
    let legal = [
        (Received, PendingApproval),
        (Received, Running),
        (Received, NotAutomated),
        (PendingApproval, Approved),
        (PendingApproval, Rejected),
        (PendingApproval, Expired),
        (Approved, Running),
        (Approved, NotAutomated),
        (Running, Running),
        (Running, Done),
        (Running, Failed),
        (Failed, Running),
        (Done, Undone),
    ];
    for from in TaskState::ALL {
        for to in TaskState::ALL {
            assert_eq!(
                from.may_become(to),
                legal.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn the_preview_hash_ignores_key_order_but_not_values() {
    let a = json!({"method": "PATCH", "body": {"b": 1, "a": [1, {"y": 2, "x": 1}]}});
    let b = json!({"body": {"a": [1, {"x": 1, "y": 2}], "b": 1}, "method": "PATCH"});
    assert_eq!(preview_hash(&a), preview_hash(&b));
    let c = json!({"method": "PATCH", "body": {"b": 2, "a": [1, {"y": 2, "x": 1}]}});
    assert_ne!(preview_hash(&a), preview_hash(&c));
    assert_eq!(preview_hash(&a).len(), 64);
}

/// The documents an entry carries as text are stored as the JSON they are, not as strings
/// holding JSON: entries written before and after read the same, and a reader of the store
/// (or of `journal show --json`) sees objects.
#[tokio::test]
async fn an_entrys_documents_are_stored_as_json_and_read_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = task("kv-raw");
    journal.receive_claiming_run(&task, "w").await.unwrap();
    let prior = json!({"networkAcls": {"defaultAction": "Allow", "ipRules": []}, "n": 1.5});
    let preview = json!({"summary": "deny", "change": {"requests": [{"method": "PATCH"}]}});
    journal
        .record_prior_state(&task.message_id, prior.clone(), preview.clone())
        .await
        .unwrap();
    let (stored, _) = journal
        .store()
        .load(&task.message_id)
        .await
        .unwrap()
        .unwrap();
    let as_stored = serde_json::to_value(&stored).unwrap();
    assert_eq!(as_stored["prior_state"], prior);
    assert_eq!(as_stored["preview"], preview);
    // Decoding the stored JSON of an entry from a `Value` (as an API client does) works too.
    let decoded: JournalEntry = serde_json::from_value(as_stored).unwrap();
    assert_eq!(decoded, stored);
    assert_eq!(stored.prior_state.as_ref().unwrap().to_value(), prior);
    // `journal show --json` indents them like the rest of the entry.
    let shown = render_json(std::slice::from_ref(&stored));
    assert!(shown.contains("\"defaultAction\": \"Allow\""), "{shown}");

    // Equal documents are equal whatever their spacing or key order; different ones are not.
    let spaced: RawJson = serde_json::from_str(
        r#"{ "n" : 1.5, "networkAcls": {"ipRules": [], "defaultAction": "Allow"} }"#,
    )
    .unwrap();
    assert_eq!(stored.prior_state, Some(spaced));
    assert_ne!(stored.prior_state, Some(RawJson::from(json!({"n": 2}))));
}

/// The canonical form as first written (a string per key and scalar): the hash of every
/// preview recorded so far, which decision, Undo and Keep links are bound to.
fn canonical_as_first_written(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_as_first_written(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                canonical_as_first_written(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[test]
fn the_preview_hash_is_the_one_links_were_bound_to() {
    use sha2::Digest;
    let preview = json!({
        "task": {"message_id": "m-1", "reason": "quote \" backslash \\ tab \t é ✓ \u{1}", "n": -12, "f": 1.5e300, "t": true, "z": null},
        "change": {"requests": [{"method": "PATCH", "body": {"properties": {"networkAcls": {"defaultAction": "Deny", "ipRules": []}}}}], "summary": "would PATCH"},
        "prior_state": {"Zeta": 1, "alpha": [0.1, 2, "x"], "_": {}},
        "leases": ["/subscriptions/s/kv"],
        "subscriptions": [],
    });
    let mut canonical = String::new();
    canonical_as_first_written(&preview, &mut canonical);
    assert_eq!(
        preview_hash(&preview),
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
}

#[tokio::test]
async fn a_claimed_runs_first_write_is_not_synced_by_itself_and_every_other_commit_is() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteJournal::open(&dir.path().join("journal.sqlite3")).unwrap();
    let runs = Journal::new(Arc::new(sqlite.clone()));
    assert_eq!(sqlite.synchronous(), 2, "FULL from the start");
    let during = sqlite
        .on_connection(true, |connection| {
            Ok(connection.query_row("PRAGMA synchronous", [], |row| row.get::<_, i64>(0))?)
        })
        .await
        .unwrap();
    assert_eq!(during, 1, "NORMAL: durable with the next synced commit");
    assert_eq!(sqlite.synchronous(), 2);

    for (target, listing) in [("kv-claimed", false), ("kv-claimed-listing", true)] {
        let mut ready = task(target);
        ready.status = TaskStatus::Ready;
        let (received, claimed) = if listing {
            let (received, claimed, entries) = runs
                .receive_claiming_run_listing_alert(&ready, "worker")
                .await
                .unwrap();
            assert!(entries.iter().any(|e| e.message_id == ready.message_id));
            (received, claimed)
        } else {
            runs.receive_claiming_run(&ready, "worker").await.unwrap()
        };
        assert!(claimed && received.first_time);
        assert_eq!(received.entry.state, TaskState::Running);
        assert_eq!(
            sqlite.synchronous(),
            2,
            "{target}: the run's next write is synced again"
        );
    }
    assert_eq!(
        sqlite.unsynced_writes(),
        3,
        "both claimed writes ran unsynced"
    );
    runs.receive(&task("kv-pending"), "worker").await.unwrap();
    assert_eq!(sqlite.unsynced_writes(), 3, "any other write is synced");
    // Reopened, the claimed entries are there.
    drop(runs);
    drop(sqlite);
    let reopened = journal(&dir);
    let mut ready = task("kv-claimed");
    ready.status = TaskStatus::Ready;
    let entry = reopened.get(&ready.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Running);
}

#[tokio::test]
async fn a_redelivery_finds_the_entry_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = task("kv-a");
    let first = journal.receive(&task, "worker-1").await.unwrap();
    assert!(first.first_time);
    assert_eq!(first.entry.state, TaskState::Received);
    journal
        .begin_run(&task.message_id, "worker-1")
        .await
        .unwrap();
    journal
        .finish(
            &task.message_id,
            RunOutcome::Done {
                result: json!({"status": 200}),
                verification: json!({"defaultAction": "Deny"}),
            },
            "worker-1",
        )
        .await
        .unwrap();
    let again = journal.receive(&task, "worker-2").await.unwrap();
    assert!(!again.first_time);
    assert_eq!(again.entry.state, TaskState::Done);
    let err = journal
        .begin_run(&task.message_id, "worker-2")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::IllegalTransition {
                from: TaskState::Done,
                ..
            }
        ),
        "{err}"
    );
    let entry = journal.get(&task.message_id).await.unwrap().unwrap();
    let states: Vec<_> = entry.history.iter().map(|e| e.to).collect();
    assert_eq!(
        states,
        [TaskState::Received, TaskState::Running, TaskState::Done]
    );
    assert_eq!(entry.attempts, 1);
    assert_eq!(
        entry.verification,
        Some(RawJson::from(json!({"defaultAction": "Deny"})))
    );
}

#[test]
fn two_instances_racing_begin_run_on_one_file_give_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Two opens of one file: two processes' worth of connections.
        let a = Journal::new(Arc::new(SqliteJournal::open(&path).unwrap()));
        let b = Journal::new(Arc::new(SqliteJournal::open(&path).unwrap()));
        for round in 0..20 {
            let task = task(&format!("kv-{round}"));
            a.receive(&task, "a").await.unwrap();
            let (ra, rb) = tokio::join!(
                tokio::spawn({
                    let a = a.clone();
                    let id = task.message_id.clone();
                    async move { a.begin_run(&id, "a").await }
                }),
                tokio::spawn({
                    let b = b.clone();
                    let id = task.message_id.clone();
                    async move { b.begin_run(&id, "b").await }
                }),
            );
            let results = [ra.unwrap(), rb.unwrap()];
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "round {round}: {results:?}");
            let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
            assert!(
                matches!(
                    loser,
                    JournalError::IllegalTransition {
                        from: TaskState::Running,
                        to: TaskState::Running,
                        ..
                    }
                ),
                "{loser}"
            );
        }
    });
}

#[tokio::test]
async fn a_stale_run_may_be_taken_over_and_a_failed_run_retried() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir).with_run_timeout(Duration::from_millis(50));
    let task = task("kv-b");
    journal.receive(&task, "w").await.unwrap();
    journal.begin_run(&task.message_id, "w1").await.unwrap();
    assert!(journal.begin_run(&task.message_id, "w2").await.is_err());
    tokio::time::sleep(Duration::from_millis(80)).await;
    let entry = journal.begin_run(&task.message_id, "w2").await.unwrap();
    assert_eq!(entry.attempts, 2);
    assert_eq!(entry.run_by.as_deref(), Some("w2"));
    journal
        .finish(
            &task.message_id,
            RunOutcome::Failed {
                error: "ARM answered 503".into(),
                retryable: true,
            },
            "w2",
        )
        .await
        .unwrap();
    let entry = journal.begin_run(&task.message_id, "w3").await.unwrap();
    assert_eq!(entry.attempts, 3);
    assert_eq!(entry.error, None);
    journal
        .finish(
            &task.message_id,
            RunOutcome::Failed {
                error: "ARM answered 403".into(),
                retryable: false,
            },
            "w3",
        )
        .await
        .unwrap();
    let err = journal.begin_run(&task.message_id, "w4").await.unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::IllegalTransition {
                from: TaskState::Failed,
                ..
            }
        ),
        "a permanent failure is not run again: {err}"
    );
}

#[tokio::test]
async fn one_undo_claim_wins_a_failed_one_may_be_claimed_again_and_an_undone_task_none() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = task("kv-undo");
    let id = &task.message_id;
    journal.receive(&task, "w").await.unwrap();
    assert!(
        matches!(
            journal.claim_undo(id, "alice").await,
            Err(JournalError::IllegalTransition {
                from: TaskState::Received,
                ..
            })
        ),
        "only a done task may be undone"
    );
    journal.begin_run(id, "w").await.unwrap();
    journal
        .finish(
            id,
            RunOutcome::Done {
                result: json!({"sent": [{"method": "PATCH", "url": "u", "status": 200}]}),
                verification: json!(null),
            },
            "w",
        )
        .await
        .unwrap();
    journal.claim_undo(id, "alice").await.unwrap();
    let err = journal.claim_undo(id, "bob").await.unwrap_err();
    assert!(
        matches!(&err, JournalError::UndoInProgress { by, .. } if by == "alice"),
        "a second undo must not run while the first does: {err}"
    );
    assert!(Error::from(err).is_retryable());
    journal
        .undo_failed(id, "ARM answered 503", "alice")
        .await
        .unwrap();
    let entry = journal.claim_undo(id, "bob").await.unwrap();
    assert_eq!(entry.undo.as_ref().map(|u| u.by.as_str()), Some("bob"));
    let entry = journal
        .undone(id, json!({"sent": []}), "bob")
        .await
        .unwrap();
    assert_eq!(entry.state, TaskState::Undone);
    assert_eq!(entry.undo.unwrap().error, None);
    assert!(matches!(
        journal.claim_undo(id, "carol").await,
        Err(JournalError::IllegalTransition {
            from: TaskState::Undone,
            ..
        })
    ));
}

#[tokio::test]
async fn the_first_confirmation_of_a_done_task_stands() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = task("kv-confirm");
    let id = &task.message_id;
    journal.receive(&task, "w").await.unwrap();
    assert!(journal.confirm(id, "alice").await.is_err(), "not done yet");
    journal.begin_run(id, "w").await.unwrap();
    journal
        .finish(
            id,
            RunOutcome::Done {
                result: json!({}),
                verification: json!(null),
            },
            "w",
        )
        .await
        .unwrap();
    journal.confirm(id, "alice").await.unwrap();
    let entry = journal.confirm(id, "bob").await.unwrap();
    assert_eq!(entry.confirmation.unwrap().by, "alice");
    assert_eq!(entry.state, TaskState::Done);
}

#[tokio::test]
async fn a_decision_is_recorded_once_and_only_on_the_change_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = task("kv-c");
    journal.receive(&task, "w").await.unwrap();
    let preview = json!({"method": "PATCH", "url": "https://management.azure.com/kv-c"});
    let entry = journal
        .await_approval(&task.message_id, preview.clone(), "w")
        .await
        .unwrap();
    let hash = entry.preview_hash.clone().unwrap();
    assert_eq!(hash, preview_hash(&preview));

    let err = journal
        .decide(&task.message_id, Verdict::Approve, Some("0000"), "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, JournalError::PreviewChanged { .. }), "{err}");
    assert_eq!(
        journal.get(&task.message_id).await.unwrap().unwrap().state,
        TaskState::PendingApproval,
        "a refused decision changes nothing"
    );

    let entry = journal
        .decide(&task.message_id, Verdict::Approve, Some(&hash), "alice")
        .await
        .unwrap();
    assert_eq!(entry.state, TaskState::Approved);
    assert_eq!(entry.decision.as_ref().unwrap().by, "alice");
    let err = journal
        .decide(&task.message_id, Verdict::Reject, Some(&hash), "bob")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::IllegalTransition {
                from: TaskState::Approved,
                to: TaskState::Rejected,
                ..
            }
        ),
        "{err}"
    );
    let entries = journal.for_alert("sys-1").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].decision.as_ref().unwrap().by, "alice");
}

#[tokio::test]
async fn a_lease_is_exclusive_until_released_or_lapsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let a = SqliteJournal::open(&path).unwrap();
    let b = SqliteJournal::open(&path).unwrap();
    let ttl = Duration::from_millis(200);
    let lease = a
        .acquire_lease("/subscriptions/s/kv", "a", ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(b
        .acquire_lease("/subscriptions/s/kv", "b", ttl)
        .await
        .unwrap()
        .is_none());
    assert!(b
        .acquire_lease("/subscriptions/s/other", "b", ttl)
        .await
        .unwrap()
        .is_some());
    let lease = a.renew_lease(&lease).await.unwrap();
    a.release_lease(&lease).await.unwrap();
    let held = b
        .acquire_lease("/subscriptions/s/kv", "b", ttl)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let taken = a
        .acquire_lease("/subscriptions/s/kv", "a", ttl)
        .await
        .unwrap();
    assert!(taken.is_some(), "a lapsed lease can be taken");
    let err = b.renew_lease(&held).await.unwrap_err();
    assert!(matches!(err, JournalError::LeaseLost(_)), "{err}");
    assert!(matches!(
        b.release_lease(&held).await.unwrap_err(),
        JournalError::LeaseLost(_)
    ));
}

#[tokio::test]
async fn a_lease_of_no_duration_is_refused_by_name_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteJournal::open(&dir.path().join("journal.sqlite3")).unwrap());
    let journal = Journal::new(store.clone());
    let err = store
        .acquire_lease("/subscriptions/s/kv", "a", Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JournalError::InvalidLease(reason) if reason == "a lease needs a duration"),
        "{err}"
    );
    let first = task("kv-no-duration");
    journal.receive_claiming_run(&first, "w").await.unwrap();
    let before = journal.get(&first.message_id).await.unwrap().unwrap();
    let err = journal
        .record_prior_state_leasing(
            &first.message_id,
            json!({"defaultAction": "Allow"}),
            json!({"change": {"summary": "deny"}}),
            &["/subscriptions/s/kv".to_string()],
            "w",
            Duration::ZERO,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JournalError::InvalidLease(reason) if reason == "a lease needs a duration"),
        "{err}"
    );
    assert_eq!(
        journal.get(&first.message_id).await.unwrap().unwrap(),
        before,
        "no prior state is recorded for a run that cannot hold its resources"
    );
    // No resources to hold: no duration is needed.
    let (_, leased) = journal
        .record_prior_state_leasing(
            &first.message_id,
            json!({"defaultAction": "Allow"}),
            json!({"change": {"summary": "deny"}}),
            &[],
            "w",
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(leased.expect("nothing to hold").is_empty());
}

#[test]
fn journal_errors_map_onto_retryable_and_permanent() {
    let id = MessageId::derive("a", Action::ContactOwner, "b");
    assert!(Error::from(JournalError::Storage("down".into())).is_retryable());
    assert!(Error::from(JournalError::Contended(id.clone())).is_retryable());
    assert!(!Error::from(JournalError::IllegalTransition {
        message_id: id,
        from: TaskState::Done,
        to: TaskState::Running
    })
    .is_retryable());
}

/// A store whose first conditional replace lands but answers "refused", as when the answer to
/// a write is lost and the client's retry of it finds the version already moved on.
struct LostAnswer {
    inner: SqliteJournal,
    lost: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl JournalStore for LostAnswer {
    fn name(&self) -> &'static str {
        "lost-answer"
    }
    async fn create(&self, entry: &JournalEntry) -> Result<Option<Version>, JournalError> {
        self.inner.create(entry).await
    }
    async fn load(&self, id: &MessageId) -> Result<Option<(JournalEntry, Version)>, JournalError> {
        self.inner.load(id).await
    }
    async fn replace(
        &self,
        entry: &JournalEntry,
        expected: &Version,
    ) -> Result<Option<Version>, JournalError> {
        let written = self.inner.replace(entry, expected).await?;
        if !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        Ok(written)
    }
    async fn for_alert(&self, id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.for_alert(id).await
    }
    async fn recent(&self, limit: usize) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.recent(limit).await
    }
    async fn in_state(&self, state: TaskState) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.in_state(state).await
    }
    async fn follow_ups_due(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.follow_ups_due(now, limit).await
    }
    async fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, JournalError> {
        self.inner.acquire_lease(resource, holder, ttl).await
    }
    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, JournalError> {
        self.inner.renew_lease(lease).await
    }
    async fn release_lease(&self, lease: &Lease) -> Result<(), JournalError> {
        self.inner.release_lease(lease).await
    }
}

#[tokio::test]
async fn a_writer_whose_answer_was_lost_still_knows_it_won() {
    let dir = tempfile::tempdir().unwrap();
    let store = LostAnswer {
        inner: SqliteJournal::open(&dir.path().join("j.sqlite3")).unwrap(),
        lost: std::sync::atomic::AtomicBool::new(false),
    };
    let journal = Journal::new(Arc::new(store));
    let task = task("kv-lost");
    journal.receive(&task, "w").await.unwrap();
    let entry = journal.begin_run(&task.message_id, "w").await.unwrap();
    assert_eq!(entry.state, TaskState::Running);
    assert_eq!(
        entry.attempts, 1,
        "the run was claimed once, by this caller"
    );
}

#[tokio::test]
async fn a_held_lease_is_renewed_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let ttl = Duration::from_millis(300);
    let held = journal
        .hold_lease("/subscriptions/s/kv", "a", ttl)
        .await
        .unwrap()
        .unwrap();
    // Three durations later it is still held: renewed in the background.
    tokio::time::sleep(ttl * 3).await;
    assert!(!held.is_lost());
    assert!(journal
        .store()
        .acquire_lease("/subscriptions/s/kv", "b", ttl)
        .await
        .unwrap()
        .is_none());
    held.release().await.unwrap();
    let other = journal
        .store()
        .acquire_lease("/subscriptions/s/kv", "b", ttl)
        .await
        .unwrap();
    assert!(other.is_some(), "released at once");

    // Dropped without release: the renewal stops and the lease lapses.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let dropped = journal
        .hold_lease("/subscriptions/s/kv", "c", ttl)
        .await
        .unwrap()
        .unwrap();
    drop(dropped);
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(journal
        .store()
        .acquire_lease("/subscriptions/s/kv", "d", ttl)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_first_delivery_is_recorded_claimed_in_one_write_and_a_redelivery_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = task("kv-claimed");
    let (received, claimed) = journal.receive_claiming_run(&task, "w").await.unwrap();
    assert!(claimed && received.first_time);
    let stored = journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(stored, received.entry);
    assert_eq!(stored.state, TaskState::Running);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.run_by.as_deref(), Some("w"));
    let states: Vec<_> = stored.history.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        states,
        [
            (None, TaskState::Received),
            (Some(TaskState::Received), TaskState::Running)
        ]
    );

    // A redelivery finds the claimed entry and claims nothing; the run cannot be taken.
    let (again, claimed) = journal.receive_claiming_run(&task, "v").await.unwrap();
    assert!(!claimed && !again.first_time);
    assert_eq!(again.entry, stored);
    let err = journal.begin_run(&task.message_id, "v").await.unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::IllegalTransition {
                from: TaskState::Running,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_run_finished_with_its_leases_gives_them_back_in_the_same_write() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = task("kv-leased");
    journal.receive_claiming_run(&task, "w").await.unwrap();
    let ttl = Duration::from_secs(60);
    let held = journal
        .hold_lease("/subscriptions/s/kv-leased", "w", ttl)
        .await
        .unwrap()
        .unwrap();
    let lease = held.stop().await.unwrap();
    // Stopped, not released: still held.
    assert!(journal
        .store()
        .acquire_lease("/subscriptions/s/kv-leased", "other", ttl)
        .await
        .unwrap()
        .is_none());
    let done = journal
        .finish_releasing(
            &task.message_id,
            RunOutcome::Done {
                result: json!({"ok": true}),
                verification: json!({}),
            },
            None,
            vec![lease.clone()],
            "w",
        )
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Done);
    assert!(journal
        .store()
        .acquire_lease("/subscriptions/s/kv-leased", "other", ttl)
        .await
        .unwrap()
        .is_some());

    // A refused finish (the task is done already) still gives its leases back.
    let other = journal
        .store()
        .acquire_lease("/subscriptions/s/kv-second", "w", ttl)
        .await
        .unwrap()
        .unwrap();
    let err = journal
        .finish_releasing(
            &task.message_id,
            RunOutcome::Done {
                result: json!({}),
                verification: json!({}),
            },
            None,
            vec![other],
            "w",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, JournalError::IllegalTransition { .. }),
        "{err}"
    );
    assert!(journal
        .store()
        .acquire_lease("/subscriptions/s/kv-second", "third", ttl)
        .await
        .unwrap()
        .is_some());
}

/// A SQLite journal that records which of the store's calls the journal made.
struct Recording {
    inner: SqliteJournal,
    calls: std::sync::Mutex<Vec<&'static str>>,
}

impl Recording {
    fn open(dir: &tempfile::TempDir) -> Arc<Self> {
        Arc::new(Recording {
            inner: SqliteJournal::open(&dir.path().join("recorded.sqlite3")).unwrap(),
            calls: Default::default(),
        })
    }

    fn saw(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl JournalStore for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }
    async fn create(&self, entry: &JournalEntry) -> Result<Option<Version>, JournalError> {
        self.saw("create");
        self.inner.create(entry).await
    }
    async fn create_listing_alert(
        &self,
        entry: &JournalEntry,
    ) -> Result<(Option<Version>, Vec<JournalEntry>), JournalError> {
        self.saw("create_listing_alert");
        self.inner.create_listing_alert(entry).await
    }
    async fn load(&self, id: &MessageId) -> Result<Option<(JournalEntry, Version)>, JournalError> {
        self.saw("load");
        self.inner.load(id).await
    }
    async fn replace(
        &self,
        entry: &JournalEntry,
        expected: &Version,
    ) -> Result<Option<Version>, JournalError> {
        self.saw("replace");
        self.inner.replace(entry, expected).await
    }
    async fn update(&self, id: &MessageId, update: EntryUpdate) -> Result<Updated, JournalError> {
        self.saw("update");
        self.inner.update(id, update).await
    }
    async fn update_releasing(
        &self,
        id: &MessageId,
        update: EntryUpdate,
        leases: &[Lease],
    ) -> Result<Updated, JournalError> {
        self.saw("update_releasing");
        self.inner.update_releasing(id, update, leases).await
    }
    async fn update_acquiring(
        &self,
        id: &MessageId,
        update: EntryUpdate,
        resources: &[String],
        holder: &str,
        ttl: Duration,
    ) -> Result<(Updated, Leased), JournalError> {
        self.saw("update_acquiring");
        self.inner
            .update_acquiring(id, update, resources, holder, ttl)
            .await
    }
    async fn for_alert(&self, id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        self.saw("for_alert");
        self.inner.for_alert(id).await
    }
    async fn recent(&self, limit: usize) -> Result<Vec<JournalEntry>, JournalError> {
        self.saw("recent");
        self.inner.recent(limit).await
    }
    async fn in_state(&self, state: TaskState) -> Result<Vec<JournalEntry>, JournalError> {
        self.saw("in_state");
        self.inner.in_state(state).await
    }
    async fn follow_ups_due(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.saw("follow_ups_due");
        self.inner.follow_ups_due(now, limit).await
    }
    async fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, JournalError> {
        self.saw("acquire_lease");
        self.inner.acquire_lease(resource, holder, ttl).await
    }
    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, JournalError> {
        self.saw("renew_lease");
        self.inner.renew_lease(lease).await
    }
    async fn release_lease(&self, lease: &Lease) -> Result<(), JournalError> {
        self.saw("release_lease");
        self.inner.release_lease(lease).await
    }
}

#[tokio::test]
async fn a_live_run_records_its_prior_state_and_takes_its_leases_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::open(&dir);
    let journal = Journal::new(store.clone());
    let first = task("kv-prior");
    journal.receive_claiming_run(&first, "w").await.unwrap();
    store.take();
    let ttl = Duration::from_secs(60);
    let resources = vec![
        "/subscriptions/s/kv-prior".to_string(),
        "/subscriptions/s/kv-prior/secrets".to_string(),
    ];
    let (entry, leased) = journal
        .record_prior_state_leasing(
            &first.message_id,
            json!({"defaultAction": "Allow"}),
            json!({"change": {"summary": "deny"}}),
            &resources,
            "w",
            ttl,
        )
        .await
        .unwrap();
    assert_eq!(
        store.take(),
        ["update_acquiring"],
        "one store call: the entry and both leases in one transaction"
    );
    assert_eq!(
        entry.prior_state,
        Some(RawJson::from(json!({"defaultAction": "Allow"})))
    );
    assert_eq!(
        journal.get(&first.message_id).await.unwrap().unwrap(),
        entry
    );
    let held = leased.expect("both leases are free");
    assert_eq!(held.len(), 2);
    for resource in &resources {
        assert!(
            journal
                .store()
                .acquire_lease(resource, "other", ttl)
                .await
                .unwrap()
                .is_none(),
            "{resource} is held"
        );
    }
    for lease in held {
        lease.release().await.unwrap();
    }

    // The second resource held elsewhere: the prior state is recorded all the same, and the
    // first lease is not kept.
    let other = task("kv-prior-busy");
    journal.receive_claiming_run(&other, "w").await.unwrap();
    let busy = journal
        .store()
        .acquire_lease(&resources[1], "someone", ttl)
        .await
        .unwrap()
        .unwrap();
    let (entry, leased) = journal
        .record_prior_state_leasing(
            &other.message_id,
            json!({"defaultAction": "Allow"}),
            json!({"change": {"summary": "deny"}}),
            &resources,
            "w",
            ttl,
        )
        .await
        .unwrap();
    assert_eq!(
        entry.prior_state,
        Some(RawJson::from(json!({"defaultAction": "Allow"})))
    );
    assert_eq!(leased.err().as_deref(), Some(resources[1].as_str()));
    assert!(journal
        .store()
        .acquire_lease(&resources[0], "third", ttl)
        .await
        .unwrap()
        .is_some());
    journal.store().release_lease(&busy).await.unwrap();

    // Not running: refused, and no lease is taken.
    let refused = journal
        .record_prior_state_leasing(
            &task("kv-prior-unknown").message_id,
            json!({}),
            json!({}),
            &["/subscriptions/s/kv-free".to_string()],
            "w",
            ttl,
        )
        .await;
    assert!(matches!(refused, Err(JournalError::NotFound(_))));
    assert!(journal
        .store()
        .acquire_lease("/subscriptions/s/kv-free", "third", ttl)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_claimed_first_delivery_reads_its_alert_in_the_same_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::open(&dir);
    let journal = Journal::new(store.clone());
    let mut first = task("kv-listed-1");
    first.status = TaskStatus::Ready;
    journal.receive(&first, "w").await.unwrap();
    let mut second = task("kv-listed-2");
    second.status = TaskStatus::Ready;
    store.take();
    let (received, claimed, listed) = journal
        .receive_claiming_run_listing_alert(&second, "w")
        .await
        .unwrap();
    assert!(claimed && received.first_time);
    assert_eq!(store.take(), ["create_listing_alert"]);
    assert_eq!(
        listed,
        journal.for_alert("sys-1").await.unwrap(),
        "what for_alert reads after the write"
    );
    assert_eq!(listed.len(), 2);

    // A redelivery: not claimed, the entry loaded as it is.
    let (again, claimed, listed) = journal
        .receive_claiming_run_listing_alert(&second, "v")
        .await
        .unwrap();
    assert!(!claimed && !again.first_time);
    assert_eq!(again.entry, received.entry);
    assert_eq!(listed.len(), 2);
}
