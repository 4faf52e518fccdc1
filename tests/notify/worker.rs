//! The notification worker delivering through the policy's channels: a Key Vault alert's
//! notification tasks as the queue hands them over become one Teams message per alert, sent
//! once however often the tasks are redelivered; notices about containment outcomes go the
//! same way.

use std::sync::Arc;

use defender_responder::adapters::{EmbeddedStore, QueueNames, SharedPublisher};
use defender_responder::domain::Queue;
use defender_responder::journal::TaskState;
use defender_responder::policy::notifications::ChannelKind;
use defender_responder::workers::{Settlement, Worker};
use serde_json::json;

use super::support::{chat_notifier, journal, notifications, planned, Receiver};

fn publisher(dir: &tempfile::TempDir) -> SharedPublisher {
    Arc::new(EmbeddedStore::open(&dir.path().join("store.sqlite3"), QueueNames::default()).unwrap())
}

#[tokio::test]
async fn notification_tasks_go_out_through_the_policy_channel_once() {
    let receiver = Receiver::start(&[]).await;
    let (policy, notifier) = chat_notifier(ChannelKind::Teams, &receiver);
    let (journal, dir) = journal();
    let worker = Worker::new(journal.clone(), publisher(&dir)).with_notifier(Some(notifier));
    let tasks = notifications(&planned(&policy));
    assert!(!tasks.is_empty());

    for task in &tasks {
        let body = serde_json::to_value(task).unwrap();
        // The host hands Service Bus bodies over as a JSON string.
        let settlement = worker
            .process(Queue::Notification, &json!(body.to_string()))
            .await;
        assert!(
            matches!(&settlement, Settlement::Complete { .. }),
            "{settlement:?}"
        );
    }
    let sent = receiver.log();
    assert!(!sent.is_empty());
    for received in &sent {
        assert_eq!(received.body["type"], "message", "{}", received.body);
        assert_eq!(
            received.body["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
    }
    for task in &tasks {
        let entry = journal.get(&task.message_id).await.unwrap().unwrap();
        assert_eq!(entry.state, TaskState::Done, "{}", task.message_id);
    }

    // Redelivered: nothing is sent again.
    for task in &tasks {
        let settlement = worker
            .process(Queue::Notification, &serde_json::to_value(task).unwrap())
            .await;
        assert!(!settlement.is_retry(), "{settlement:?}");
    }
    assert_eq!(receiver.log().len(), sent.len());
}

#[tokio::test]
async fn a_notice_reaches_the_security_team_through_the_channel_once() {
    let receiver = Receiver::start(&[]).await;
    let (policy, notifier) = chat_notifier(ChannelKind::Slack, &receiver);
    let (journal, dir) = journal();
    let worker = Worker::new(journal, publisher(&dir))
        .with_notifier(Some(notifier))
        .with_security_team(policy.notify_recipients.clone());
    let mut containment = planned(&policy)
        .into_iter()
        .find(|t| t.queue == Queue::Isolation)
        .expect("the sample alert plans containment");
    containment.recipients.clear();

    let detail = json!({"note": "no executor carries out enable_key_vault_firewall here"});
    worker
        .announce(&containment, "not_automated", detail.clone())
        .await
        .unwrap();
    worker
        .announce(&containment, "not_automated", detail)
        .await
        .unwrap();
    let sent = receiver.log();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let text = sent[0].body.to_string();
    assert!(text.contains("not automated"), "{text}");
    assert!(text.contains("no executor carries out"), "{text}");
}
