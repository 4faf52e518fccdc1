//! The deployed journal on a real Azurite (Blob storage over HTTPS, bearer tokens): the
//! compare-and-set race, redelivery, queries, lease exclusivity and expiry, and the undo claim.

use std::sync::Arc;
use std::time::Duration;

use defender_responder::journal::{
    FollowUpOutcome, Journal, JournalError, JournalStore, RawJson, RunOutcome, ScheduledFollowUp,
    TaskState, Verdict,
};
use serde_json::json;

use crate::support::{blob_journal, blob_journal_on, pending_task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_begin_run_give_exactly_one_winner() {
    let first = blob_journal().await;
    let second = blob_journal_on(&first);
    let a = Journal::new(Arc::new(first));
    let b = Journal::new(Arc::new(second));
    for round in 0..10 {
        let task = pending_task("sys-race", &format!("/subscriptions/s/kv-{round}"));
        // Both instances receive the same delivery; only one records it first.
        let (ra, rb) = tokio::join!(a.receive(&task, "a"), b.receive(&task, "b"));
        assert_ne!(
            ra.unwrap().first_time,
            rb.unwrap().first_time,
            "round {round}: exactly one receive records the task"
        );
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
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(
            matches!(
                loser,
                JournalError::IllegalTransition {
                    from: TaskState::Running,
                    ..
                }
            ),
            "{loser}"
        );
        let entry = a.get(&task.message_id).await.unwrap().unwrap();
        assert_eq!(entry.attempts, 1, "one run started");
    }
}

#[tokio::test]
async fn a_redelivery_sees_done_and_nothing_runs_twice() {
    let store = blob_journal().await;
    let other = blob_journal_on(&store);
    let journal = Journal::new(Arc::new(store));
    let task = pending_task("sys-redeliver", "/subscriptions/s/kv-r");
    journal.receive(&task, "w1").await.unwrap();
    let preview = json!({"method": "PATCH", "url": "https://management.azure.com/subscriptions/s/kv-r",
                         "body": {"properties": {"networkAcls": {"defaultAction": "Deny"}}}});
    let pending = journal
        .await_approval(&task.message_id, preview, "w1")
        .await
        .unwrap();
    journal
        .decide(
            &task.message_id,
            Verdict::Approve,
            pending.preview_hash.as_deref(),
            "owner@contoso.com",
        )
        .await
        .unwrap();
    journal.begin_run(&task.message_id, "w1").await.unwrap();
    journal
        .record_prior_state(
            &task.message_id,
            json!({"networkAcls": {"defaultAction": "Allow"}}),
            pending.preview.as_ref().unwrap().to_value(),
        )
        .await
        .unwrap();
    journal
        .finish(
            &task.message_id,
            RunOutcome::Done {
                result: json!({"status": 200}),
                verification: json!({"defaultAction": "Deny"}),
            },
            "w1",
        )
        .await
        .unwrap();

    // The redelivery lands on another instance.
    let again = Journal::new(Arc::new(other));
    let received = again.receive(&task, "w2").await.unwrap();
    assert!(!received.first_time);
    assert_eq!(received.entry.state, TaskState::Done);
    let err = again.begin_run(&task.message_id, "w2").await.unwrap_err();
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
    let entry = again.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(
        entry.prior_state,
        Some(RawJson::from(
            json!({"networkAcls": {"defaultAction": "Allow"}})
        ))
    );
    assert_eq!(entry.decision.unwrap().by, "owner@contoso.com");
    let states: Vec<_> = entry.history.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(
        states,
        [
            "received",
            "pending_approval",
            "approved",
            "running",
            "done"
        ]
    );
}

#[tokio::test]
async fn entries_are_found_by_alert_and_listed_newest_first() {
    let store = blob_journal().await;
    let journal = Journal::new(Arc::new(store));
    let tasks: Vec<_> = (0..3)
        .map(|i| pending_task("sys-query", &format!("/subscriptions/s/kv-q{i}")))
        .collect();
    for task in &tasks {
        journal.receive(task, "w").await.unwrap();
    }
    let other = pending_task("sys-other", "/subscriptions/s/kv-x");
    journal.receive(&other, "w").await.unwrap();
    journal
        .not_automated(&tasks[1].message_id, "no executor yet", "w")
        .await
        .unwrap();

    let found = journal.for_alert("sys-query").await.unwrap();
    let ids: Vec<_> = found.iter().map(|e| e.message_id.clone()).collect();
    let expected: Vec<_> = tasks.iter().map(|t| t.message_id.clone()).collect();
    assert_eq!(ids, expected, "in the order received");
    assert!(journal.for_alert("sys-none").await.unwrap().is_empty());
    let recent = journal.recent(10).await.unwrap();
    assert_eq!(recent.len(), 4);
    assert_eq!(
        recent[0].message_id, tasks[1].message_id,
        "last changed first"
    );
    assert_eq!(recent[0].state, TaskState::NotAutomated);
}

#[tokio::test]
async fn a_stale_etag_writes_nothing() {
    let store = blob_journal().await;
    let task = pending_task("sys-cas", "/subscriptions/s/kv-c");
    let journal = Journal::new(Arc::new(blob_journal_on(&store)));
    journal.receive(&task, "w").await.unwrap();
    let (mut entry, version) = store.load(&task.message_id).await.unwrap().unwrap();
    entry.reason = "first writer".into();
    assert!(store.replace(&entry, &version).await.unwrap().is_some());
    entry.reason = "second writer with the old ETag".into();
    assert!(
        store.replace(&entry, &version).await.unwrap().is_none(),
        "If-Match on the old ETag must fail"
    );
    let (stored, _) = store.load(&task.message_id).await.unwrap().unwrap();
    assert_eq!(stored.reason, "first writer");
}

#[tokio::test]
async fn a_lease_is_exclusive_renewable_and_lapses_after_its_duration() {
    let a = blob_journal().await;
    let b = blob_journal_on(&a);
    let resource = "/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv";
    let ttl = Duration::from_secs(15);
    let err = a
        .acquire_lease(resource, "a", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, JournalError::InvalidLease(_)), "{err}");

    let lease = a.acquire_lease(resource, "a", ttl).await.unwrap().unwrap();
    assert!(b.acquire_lease(resource, "b", ttl).await.unwrap().is_none());
    assert!(b
        .acquire_lease("/subscriptions/s/other", "b", ttl)
        .await
        .unwrap()
        .is_some());
    let lease = a.renew_lease(&lease).await.unwrap();
    a.release_lease(&lease).await.unwrap();

    let held = b.acquire_lease(resource, "b", ttl).await.unwrap().unwrap();
    assert!(a.acquire_lease(resource, "a", ttl).await.unwrap().is_none());
    // Blob leases last at least 15 s: wait for this one to lapse.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let taken = a.acquire_lease(resource, "a", ttl).await.unwrap();
    assert!(
        taken.is_some(),
        "a lapsed lease can be taken by another holder"
    );
    let err = b.renew_lease(&held).await.unwrap_err();
    assert!(matches!(err, JournalError::LeaseLost(_)), "{err}");
    a.release_lease(&taken.unwrap()).await.unwrap();
}

#[tokio::test]
async fn a_held_blob_lease_outlives_its_duration_until_released() {
    let a = blob_journal().await;
    let b = blob_journal_on(&a);
    let journal = Journal::new(Arc::new(a));
    let resource = "/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/held";
    let ttl = Duration::from_secs(15);
    let held = journal
        .hold_lease(resource, "a", ttl)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!held.is_lost());
    assert!(
        b.acquire_lease(resource, "b", ttl).await.unwrap().is_none(),
        "renewed in the background past its 15 s"
    );
    held.release().await.unwrap();
    assert!(b.acquire_lease(resource, "b", ttl).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_to_undo_give_exactly_one_winner_and_the_change_survives_the_trip() {
    use defender_responder::azure::Api;
    use defender_responder::executors::{Change, PlannedRequest, Preview, WriteMethod};
    let first = blob_journal().await;
    let second = blob_journal_on(&first);
    let a = Journal::new(Arc::new(first));
    let b = Journal::new(Arc::new(second));
    let task = pending_task("sys-undo-race", "/subscriptions/s/kv-undo");
    let id = &task.message_id;
    a.receive(&task, "a").await.unwrap();
    a.begin_run(id, "a").await.unwrap();
    let preview = Preview {
        change: Change::new(
            "would PATCH kv-undo",
            vec![PlannedRequest::new(
                Api::Arm,
                WriteMethod::Patch,
                "https://management.azure.com/subscriptions/s/kv-undo?api-version=1",
                Some(json!({"properties": {"networkAcls": {"defaultAction": "Deny"}}})),
            )],
        ),
        prior_state: json!({"networkAcls": {"defaultAction": "Allow"}}),
        leases: vec!["/subscriptions/s/kv-undo".into()],
        subscriptions: vec![],
    };
    a.record_prior_state(
        id,
        preview.prior_state.clone(),
        defender_responder::workers::recorded_preview(&task, &preview),
    )
    .await
    .unwrap();
    a.finish(
        id,
        RunOutcome::Done {
            result: json!({"sent": [{"method": "PATCH", "url": "u", "status": 200}]}),
            verification: json!(null),
        },
        "a",
    )
    .await
    .unwrap();
    // What undo rebuilds its inputs from, read by the other instance.
    let entry = b.get(id).await.unwrap().unwrap();
    assert_eq!(
        defender_responder::workers::task_of(&entry).unwrap(),
        task,
        "the task as carried out"
    );
    let recorded = entry.preview.as_ref().unwrap().to_value();
    assert_eq!(recorded["leases"], json!(preview.leases));
    assert_eq!(
        recorded["change"],
        serde_json::to_value(&preview.change).unwrap()
    );
    assert_eq!(
        entry.prior_state,
        Some(RawJson::from_value(&preview.prior_state))
    );

    let (ra, rb) = tokio::join!(
        tokio::spawn({
            let a = a.clone();
            let id = id.clone();
            async move { a.claim_undo(&id, "a").await }
        }),
        tokio::spawn({
            let b = b.clone();
            let id = id.clone();
            async move { b.claim_undo(&id, "b").await }
        }),
    );
    let results = [ra.unwrap(), rb.unwrap()];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        matches!(loser, JournalError::UndoInProgress { .. }),
        "{loser}"
    );
    a.undone(id, json!({"sent": []}), "a").await.unwrap();
    assert!(matches!(
        b.claim_undo(id, "b").await,
        Err(JournalError::IllegalTransition {
            from: TaskState::Undone,
            ..
        })
    ));
}

fn scheduled_disable(
    task: &defender_responder::domain::Task,
    not_before: i64,
) -> ScheduledFollowUp {
    use defender_responder::domain::ids::SecretUri;
    use defender_responder::executors::{FollowUp, FollowUpStep};
    ScheduledFollowUp::new(
        task,
        FollowUp {
            not_before,
            step: FollowUpStep::DisableSecretVersions {
                secret: SecretUri::parse("https://kv-a.vault.azure.net/secrets/db-password")
                    .unwrap(),
                versions: vec!["0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5".into()],
                replacement: None,
            },
        },
    )
}

#[tokio::test]
async fn the_sweeper_queries_find_entries_by_state_through_their_markers() {
    let journal = Journal::new(Arc::new(blob_journal().await));
    let old = pending_task("sys-state", "/subscriptions/s/kv-state");
    journal.receive(&old, "w").await.unwrap();
    assert!(journal
        .in_state(TaskState::PendingApproval)
        .await
        .unwrap()
        .is_empty());
    journal
        .await_approval(&old.message_id, json!({"task": old}), "w")
        .await
        .unwrap();
    // Newer entries in other states are not listed at all.
    for n in 0..30 {
        let task = pending_task(
            &format!("sys-state-{n}"),
            &format!("/subscriptions/s/kv-{n}"),
        );
        journal.receive(&task, "w").await.unwrap();
    }
    let ids = |entries: Vec<defender_responder::journal::JournalEntry>| -> Vec<String> {
        entries.iter().map(|e| e.message_id.to_string()).collect()
    };
    assert_eq!(
        ids(journal.in_state(TaskState::PendingApproval).await.unwrap()),
        [old.message_id.to_string()]
    );
    journal
        .decide(&old.message_id, Verdict::Approve, None, "alice")
        .await
        .unwrap();
    assert!(
        journal
            .in_state(TaskState::PendingApproval)
            .await
            .unwrap()
            .is_empty(),
        "its pending marker went with the transition"
    );
    assert_eq!(
        ids(journal.in_state(TaskState::Approved).await.unwrap()),
        [old.message_id.to_string()]
    );
    journal.begin_run(&old.message_id, "w").await.unwrap();
    assert!(journal
        .in_state(TaskState::Approved)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_follow_up_is_found_by_its_marker_and_claimed_by_one_of_two_instances() {
    let first = blob_journal().await;
    let second = blob_journal_on(&first);
    let a = Journal::new(Arc::new(first));
    let b = Journal::new(Arc::new(second));
    let mut tasks = Vec::new();
    for round in 0..5 {
        let mut task = pending_task("sys-follow", &format!("/subscriptions/s/kv-f{round}"));
        task.status = defender_responder::domain::TaskStatus::Ready;
        a.receive(&task, "w").await.unwrap();
        a.begin_run(&task.message_id, "w").await.unwrap();
        a.finish_scheduling(
            &task.message_id,
            RunOutcome::Done {
                result: json!({}),
                verification: json!(null),
            },
            Some(scheduled_disable(&task, 100 + round)),
            "w",
        )
        .await
        .unwrap();
        tasks.push(task);
    }
    assert!(a.follow_ups_due(99, 10).await.unwrap().is_empty());
    let due: Vec<String> = b
        .follow_ups_due(102, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.message_id.to_string())
        .collect();
    let expected: Vec<String> = tasks[..3]
        .iter()
        .map(|t| t.message_id.to_string())
        .collect();
    assert_eq!(due, expected, "due ones only, earliest first");
    assert_eq!(
        a.follow_ups_due(200, 2).await.unwrap().len(),
        2,
        "the limit holds"
    );

    for task in &tasks {
        let (ra, rb) = tokio::join!(
            tokio::spawn({
                let a = a.clone();
                let id = task.message_id.clone();
                async move { a.claim_follow_up(&id, 200, "sweeper-a").await }
            }),
            tokio::spawn({
                let b = b.clone();
                let id = task.message_id.clone();
                async move { b.claim_follow_up(&id, 200, "sweeper-b").await }
            }),
        );
        let claims = [ra.unwrap().unwrap(), rb.unwrap().unwrap()];
        assert_eq!(
            claims.iter().filter(|c| c.is_some()).count(),
            1,
            "{claims:?}"
        );
        let claim = claims.into_iter().flatten().next().unwrap().claim.unwrap();
        let journal = if claim.by == "sweeper-a" { &a } else { &b };
        journal
            .settle_follow_up(
                &task.message_id,
                &claim.id,
                FollowUpOutcome::Done {
                    summary: "nothing to change".into(),
                    next: None,
                },
                &claim.by,
            )
            .await
            .unwrap()
            .expect("settled by its claimer");
    }
    assert!(
        a.follow_ups_due(i64::MAX, 10).await.unwrap().is_empty(),
        "every due marker went with its settlement"
    );
}
