//! The signed webhook against a real receiver: a Python HTTP server on loopback verifying
//! every request with the reference `standardwebhooks` package.

use std::sync::Arc;
use std::time::Duration;

use defender_responder::domain::{Action, AlertRef, Task};
use defender_responder::error::ErrorKind;
use defender_responder::journal::{Journal, RunOutcome, SqliteJournal, TaskState};
use defender_responder::notify::{Delivery, WebhookChannel, WebhookSecret, WebhookSettings};
use serde_json::Value;

use crate::support::{Receiver, SECRET};

fn channel(receiver: &Receiver, secret: &str, attempts: u32) -> WebhookChannel {
    WebhookChannel::new(WebhookSettings {
        url: receiver.url(),
        secret: WebhookSecret::parse(secret).unwrap(),
        attempts,
        timeout: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(50),
    })
    .unwrap()
}

fn notification(target: &str) -> Task {
    Task::example(
        &AlertRef::sample("sys-hook"),
        Action::ContactOwner,
        &["KV-1"],
        target,
        "ask the owner whether the access was expected",
    )
    .recipients(["owner@contoso.com"])
}

fn journal(dir: &tempfile::TempDir) -> Journal {
    Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("journal.sqlite3")).unwrap(),
    ))
}

#[tokio::test]
async fn a_503_is_retried_and_every_attempt_verifies_with_the_reference_library() {
    let receiver = Receiver::start(&["503", "200"]);
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = notification("owner@contoso.com");
    let delivery = channel(&receiver, SECRET, 5)
        .deliver(&task, &[], &journal, "notification-worker")
        .await
        .unwrap();
    assert_eq!(
        delivery,
        Delivery::Sent {
            status: 200,
            attempts: 2
        }
    );
    let log = receiver.log().await;
    assert_eq!(log.len(), 2);
    for request in &log {
        assert_eq!(request["verified"], true, "{request}");
        assert_eq!(request["webhook_id"], task.message_id.as_str());
        assert_eq!(request["id"], task.message_id.as_str());
        assert_eq!(request["type"], "defender-responder.task.contact_owner");
        assert_eq!(request["content_type"], "application/json");
    }
    let entry = journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Done);
    assert_eq!(entry.result.unwrap().to_value()["attempts"], 2);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start(&["429:2", "200"]);
    let dir = tempfile::tempdir().unwrap();
    let delivery = channel(&receiver, SECRET, 3)
        .deliver(&notification("a@contoso.com"), &[], &journal(&dir), "w")
        .await
        .unwrap();
    assert_eq!(
        delivery,
        Delivery::Sent {
            status: 200,
            attempts: 2
        }
    );
    let log = receiver.log().await;
    let gap = log[1]["at"].as_f64().unwrap() - log[0]["at"].as_f64().unwrap();
    // The backoff alone would wait 50 ms; the receiver asked for 2 s.
    assert!(gap >= 1.9, "waited {gap:.2}s between attempts");
}

#[tokio::test]
async fn a_redelivered_message_is_not_sent_again() {
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let task = notification("b@contoso.com");
    let first = channel(&receiver, SECRET, 3)
        .deliver(&task, &[], &journal(&dir), "instance-1")
        .await
        .unwrap();
    assert!(matches!(first, Delivery::Sent { .. }));
    // The queue redelivers the same message to another instance sharing the journal.
    let second = channel(&receiver, SECRET, 3)
        .deliver(&task, &[], &journal(&dir), "instance-2")
        .await
        .unwrap();
    assert_eq!(second, Delivery::AlreadyDelivered);
    assert_eq!(
        receiver.log().await.len(),
        1,
        "one request reached the receiver"
    );
}

#[tokio::test]
async fn an_unavailable_receiver_is_retryable_and_the_redelivery_sends() {
    let receiver = Receiver::start(&["503", "503", "502"]);
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = notification("c@contoso.com");
    let err = channel(&receiver, SECRET, 3)
        .deliver(&task, &[], &journal, "w")
        .await
        .unwrap_err();
    assert!(err.kind() == ErrorKind::Transient, "{err}");
    let entry = journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Failed);
    assert_eq!(entry.retryable, Some(true));
    let again = channel(&receiver, SECRET, 3)
        .deliver(&task, &[], &journal, "w")
        .await
        .unwrap();
    assert_eq!(
        again,
        Delivery::Sent {
            status: 200,
            attempts: 1
        }
    );
    assert_eq!(receiver.log().await.len(), 4);
}

#[tokio::test]
async fn a_wrong_secret_fails_verification_at_the_receiver_and_is_permanent() {
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = notification("d@contoso.com");
    let other_secret = "whsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
    let err = channel(&receiver, other_secret, 3)
        .deliver(&task, &[], &journal, "w")
        .await
        .unwrap_err();
    assert!(err.kind() == ErrorKind::Permanent, "{err}");
    let log = receiver.log().await;
    assert_eq!(log.len(), 1, "a refusal is not retried");
    assert_eq!(log[0]["verified"], false);
    assert_eq!(log[0]["status"], 401);
}

#[tokio::test]
async fn a_run_held_by_another_worker_is_waited_for_then_taken_over_when_stale() {
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir).with_run_timeout(Duration::from_millis(600));
    let task = notification("e@contoso.com");
    // Another worker claimed the run and died.
    journal.receive(&task, "crashed").await.unwrap();
    journal
        .begin_run(&task.message_id, "crashed")
        .await
        .unwrap();

    let impatient = channel(&receiver, SECRET, 3)
        .with_wait_for_other_run(Duration::from_millis(100), Duration::from_millis(50));
    let err = impatient
        .deliver(&task, &[], &journal, "w")
        .await
        .unwrap_err();
    assert!(
        err.kind() == ErrorKind::Transient,
        "given back to the queue, not completed: {err}"
    );
    assert!(receiver.log().await.is_empty());

    let patient = channel(&receiver, SECRET, 3)
        .with_wait_for_other_run(Duration::from_secs(5), Duration::from_millis(50));
    let delivery = patient.deliver(&task, &[], &journal, "w").await.unwrap();
    assert_eq!(
        delivery,
        Delivery::Sent {
            status: 200,
            attempts: 1
        }
    );
    let entry = journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.attempts, 2);
    assert_eq!(entry.run_by.as_deref(), Some("w"));
}

#[tokio::test]
async fn a_run_finished_by_another_worker_during_the_wait_is_not_sent_again() {
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let task = notification("f@contoso.com");
    journal.receive(&task, "other").await.unwrap();
    journal.begin_run(&task.message_id, "other").await.unwrap();
    let finisher = {
        let journal = journal.clone();
        let id = task.message_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            journal
                .finish(
                    &id,
                    RunOutcome::Done {
                        result: serde_json::json!({"status": 200}),
                        verification: Value::Null,
                    },
                    "other",
                )
                .await
                .unwrap();
        })
    };
    let delivery = channel(&receiver, SECRET, 3)
        .with_wait_for_other_run(Duration::from_secs(5), Duration::from_millis(50))
        .deliver(&task, &[], &journal, "w")
        .await
        .unwrap();
    finisher.await.unwrap();
    assert_eq!(delivery, Delivery::AlreadyDelivered);
    assert!(receiver.log().await.is_empty());
}
