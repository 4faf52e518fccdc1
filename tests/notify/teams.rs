//! Teams: the exact message a Workflows webhook receives, valid per the official
//! `adaptivecards` package; one message per alert and channel, sent once; retries with
//! `Retry-After`; and the 4-per-second pace.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use defender_responder::notify::notifier::render;
use defender_responder::notify::Sent;
use defender_responder::policy::notifications::ChannelKind;
use serde_json::Value;

use super::support::{chat_notifier, journal, notifications, planned, seed_pending, Receiver};

/// Validates a webhook message with `validate_card.js`; `None` when node is missing.
fn validate_card(message: &Value) -> Option<Result<String, String>> {
    if Command::new("node").arg("--version").output().is_err() {
        println!("SKIPPED: node is not installed; the Adaptive Card was not validated by the adaptivecards package");
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/notify");
    let modules = dir.join(".node/node_modules");
    if !modules.join("adaptivecards/dist/adaptivecards.js").exists() {
        let installed = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(dir.join(".node"))
            .arg("adaptivecards@3")
            .status()
            .expect("npm");
        assert!(installed.success(), "npm install adaptivecards failed");
    }
    let mut child = Command::new("node")
        .arg(dir.join("validate_card.js"))
        .env("NODE_PATH", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let errors = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Some(if output.status.success() {
        Ok(text)
    } else {
        Err(errors)
    })
}

#[tokio::test]
async fn the_card_is_sent_as_rendered_once_per_alert_and_is_a_valid_adaptive_card() {
    let receiver = Receiver::start(&[]).await;
    let (policy, notifier) = chat_notifier(ChannelKind::Teams, &receiver);
    let plan = planned(&policy);
    let tasks = notifications(&plan);
    assert!(tasks.len() >= 4, "{} notification tasks", tasks.len());
    let (journal, _dir) = journal();
    let notifier = notifier.with_decisions(seed_pending(&journal, &plan).await);
    let results = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    // Five notification tasks, one message to the channel.
    assert_eq!(results.len(), 1);
    let (outgoing, sent) = &results[0];
    assert_eq!(
        sent,
        &Sent::Delivered {
            status: 200,
            attempts: 1
        }
    );
    let log = receiver.log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].body,
        render(ChannelKind::Teams, &outgoing.notification, "chat")
    );
    assert_eq!(outgoing.notification.sections.len(), tasks.len());
    // The four pending tasks, each with signed Approve and Reject buttons.
    assert_eq!(outgoing.notification.pending.len(), 4);
    let text = log[0].body.to_string();
    assert_eq!(text.matches("\"title\":\"Approve\"").count(), 4);
    assert_eq!(
        text.matches("https://responder.example/api/decide?m=")
            .count(),
        8
    );
    let text = log[0].body.to_string();
    assert!(text.len() <= 28 * 1024, "{} bytes", text.len());
    println!("teams message: {} bytes", text.len());

    if let Some(result) = validate_card(&log[0].body) {
        let verdict =
            result.unwrap_or_else(|errors| panic!("adaptivecards refused the card:\n{errors}"));
        println!("adaptivecards: {verdict}");
        assert!(verdict.starts_with("VALID 1.5"), "{verdict}");
        // The validator is not a rubber stamp: a card with a button that has no URL fails.
        let mut broken = log[0].body.clone();
        broken["attachments"][0]["content"]["actions"][0]
            .as_object_mut()
            .unwrap()
            .remove("url");
        assert!(validate_card(&broken).unwrap().is_err());
    }

    // A redelivery of the same tasks sends nothing: the journal has every message and task.
    let again = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(receiver.log().len(), 1);
}

#[tokio::test]
async fn a_503_and_a_429_with_retry_after_are_retried_and_the_wait_is_honoured() {
    let receiver = Receiver::start(&[(503, None), (429, Some("1")), (200, None)]).await;
    let (policy, notifier) = chat_notifier(ChannelKind::Teams, &receiver);
    let tasks = notifications(&planned(&policy));
    let (journal, _dir) = journal();
    let results = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    assert_eq!(
        results[0].1,
        Sent::Delivered {
            status: 200,
            attempts: 3
        }
    );
    let log = receiver.log();
    assert_eq!(log.len(), 3);
    let waited = log[2].at - log[1].at;
    println!(
        "retry gaps: after 503 {:?}, after 429 Retry-After 1 {:?}",
        log[1].at - log[0].at,
        waited
    );
    assert!(waited >= Duration::from_millis(990), "{waited:?}");
    // Every attempt carried the same message.
    assert!(log.windows(2).all(|pair| pair[0].body == pair[1].body));
}

#[tokio::test]
async fn a_receiver_that_stays_down_is_a_retryable_failure_and_is_not_recorded_as_sent() {
    let receiver = Receiver::start(&[(503, None); 4]).await;
    let (policy, notifier) = chat_notifier(ChannelKind::Teams, &receiver);
    let tasks = notifications(&planned(&policy));
    let (journal, _dir) = journal();
    let err = notifier
        .deliver(&tasks, &journal, "test")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(receiver.log().len(), 4);
    // The redelivery sends it (the receiver's script is used up: 200).
    let results = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    assert_eq!(results.len(), 1);
    assert!(matches!(results[0].1, Sent::Delivered { .. }));
}

#[tokio::test]
async fn messages_to_one_teams_channel_keep_a_250_ms_pace() {
    let receiver = Receiver::start(&[]).await;
    let (policy, notifier) = chat_notifier(ChannelKind::Teams, &receiver);
    let tasks = notifications(&planned(&policy));
    let notifier = std::sync::Arc::new(notifier);
    let (journal, _dir) = journal();
    // Six alerts' worth of messages at once (each task as its own alert's batch).
    let start = std::time::Instant::now();
    let mut handles = Vec::new();
    for index in 0..6 {
        let mut task = tasks[0].clone();
        task.alert.system_alert_id = format!("alert-{index}");
        task.message_id = defender_responder::domain::MessageId::derive(
            &task.alert.system_alert_id,
            task.action,
            &task.target,
        );
        let notifier = notifier.clone();
        let journal = journal.clone();
        handles.push(tokio::spawn(async move {
            notifier.deliver(&[task], &journal, "test").await.unwrap()
        }));
    }
    for handle in handles {
        assert_eq!(handle.await.unwrap().len(), 1);
    }
    let mut times: Vec<_> = receiver.log().iter().map(|r| r.at).collect();
    times.sort();
    assert_eq!(times.len(), 6);
    let gaps: Vec<Duration> = times.windows(2).map(|p| p[1] - p[0]).collect();
    println!("teams pace: gaps between arrivals {gaps:?}");
    // The pace books one slot per 250 ms from the first request, and a request never arrives
    // before it was sent: the i-th arrival is at least i × 250 ms after the start, exactly.
    for (index, at) in times.iter().enumerate() {
        let due = Duration::from_millis(250) * index as u32;
        assert!(
            *at - start >= due,
            "arrival {index} at {:?}, due {due:?}",
            *at - start
        );
    }
    // Each gap is near the pace (a busy machine delays single requests, hence the bound).
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(150), "{gaps:?}");
    }
}

#[tokio::test]
async fn a_task_no_channel_covers_is_recorded_as_failed_not_as_sent() {
    let receiver = Receiver::start(&[]).await;
    let (mut policy, _) = chat_notifier(ChannelKind::Teams, &receiver);
    // Only the security team is routed; nobody else, and no default.
    policy.notifications.routes[0].recipients = vec!["nobody@fabrikam.com".into()];
    let notifier = defender_responder::notify::Notifier::new(
        &policy,
        &super::support::settings(
            "chat",
            defender_responder::config::notify::ChannelSecret::Url(receiver.url.clone()),
        ),
        None,
        None,
    )
    .unwrap();
    let tasks = notifications(&planned(&policy));
    let (journal, _dir) = journal();
    assert!(notifier
        .deliver(&tasks, &journal, "test")
        .await
        .unwrap()
        .is_empty());
    assert!(receiver.log().is_empty());
    let entry = journal.get(&tasks[0].message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, defender_responder::journal::TaskState::Failed);
    assert!(entry
        .error
        .unwrap()
        .contains("no notification channel covers"));
}
