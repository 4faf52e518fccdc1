//! Configuration faults against the real broker: a missing queue, a broker user without
//! permissions and a wrong password are retryable configuration faults that name what to fix,
//! are found at start-up and at publish time, and never lose a message.

use std::time::{Duration, Instant};

use defender_responder::adapters::Publisher;
use defender_responder::error::ErrorKind;

use crate::support::*;

#[tokio::test]
async fn a_queue_deleted_while_connected_fails_the_publish_naming_it_and_loses_nothing() {
    let _serial = serial().await;
    let queues = TestQueues::new("gone");
    let publisher = publisher(&queues, &[]);
    publisher.connect_now().await.unwrap();
    assert_eq!(publisher.readiness(), Ok(()));

    // RabbitMQ accepts and drops messages sent to /amq/queue/<name> of a missing queue.
    rabbitmqctl(&["delete_queue", &queues.names.rotation]);
    let tasks = alert_tasks("gone-1");
    let err = publisher.publish(&tasks).await.unwrap_err();
    println!("publish after the rotation queue was deleted: {err}");
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.contains(&queues.names.rotation), "{text}");
    assert!(text.contains("RESPONDER_QUEUE_ROTATION"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    let reason = publisher.readiness().unwrap_err();
    assert!(reason.contains(&queues.names.rotation), "{reason}");

    // The operator creates the queue; the platform's redelivery publishes again.
    tool(&["declare", BROKER, &queues.names.rotation]);
    publisher.publish(&tasks).await.unwrap();
    assert_eq!(publisher.readiness(), Ok(()));
    for (name, task) in queues.all().into_iter().zip(&tasks) {
        let got = receive(name, 5, 3.0);
        assert_delivered(name, &got, &[task.message_id.as_str()]);
    }
}

#[tokio::test]
async fn a_missing_queue_is_found_at_start_up() {
    let _serial = serial().await;
    let queues = TestQueues::new("absent");
    rabbitmqctl(&["delete_queue", &queues.names.isolation]);
    let publisher = publisher(&queues, &[]);
    let err = publisher.connect_now().await.unwrap_err();
    println!("start-up check without the isolation queue: {err}");
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert!(
        err.to_string().contains("RESPONDER_QUEUE_ISOLATION"),
        "{err}"
    );
    assert!(publisher
        .readiness()
        .unwrap_err()
        .contains(&queues.names.isolation));
    // Once the queue exists, the check passes and readiness recovers.
    tool(&["declare", BROKER, &queues.names.isolation]);
    publisher.connect_now().await.unwrap();
    assert_eq!(publisher.readiness(), Ok(()));
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_fault_naming_the_setting_not_a_timeout() {
    let _serial = serial().await;
    let queues = TestQueues::new("password");
    let map = [
        (
            "ServiceBusConnection",
            "amqp://guest:Wr0ngPassw0rd@127.0.0.1:5672".to_string(),
        ),
        ("RESPONDER_SB_CONNECT_TIMEOUT_SECONDS", "8".to_string()),
    ];
    let get = |k: &str| map.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let publisher = defender_responder::adapters::ServiceBusPublisher::new(
        defender_responder::adapters::ServiceBusSettings::from_lookup(&get, queues.names.clone())
            .unwrap()
            .unwrap(),
    );
    let started = Instant::now();
    let err = publisher
        .publish(&alert_tasks("password-1"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    println!("publish with a wrong password: {err} after {took:?}");
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    let text = err.to_string();
    assert!(text.contains("SASL authentication failed"), "{text}");
    assert!(text.contains("ServiceBusConnection"), "{text}");
    assert!(!text.contains("Wr0ngPassw0rd"), "{text}");
    // One refused attempt (RabbitMQ delays a refusal by about 3 s), not a timeout and no
    // second connection attempt.
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(!text.contains("timed out"), "{text}");
}

/// A broker user without access to the virtual host: the broker closes the connection with
/// `amqp:unauthorized-access`, which is a configuration fault naming the setting to fix.
#[tokio::test]
async fn a_broker_user_without_permissions_is_an_unauthorized_configuration_fault() {
    let _serial = serial().await;
    let queues = TestQueues::new("noperm");
    let user = format!("dr-test-noperm-{}", std::process::id());
    rabbitmqctl(&["add_user", &user, "noperm-pass"]);
    let _cleanup = DeleteUser(user.clone());
    let url = format!("amqp://{user}:noperm-pass@127.0.0.1:5672");
    let map = [("ServiceBusConnection", url)];
    let get = |k: &str| map.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let publisher = defender_responder::adapters::ServiceBusPublisher::new(
        defender_responder::adapters::ServiceBusSettings::from_lookup(&get, queues.names.clone())
            .unwrap()
            .unwrap(),
    );
    let err = publisher
        .publish(&alert_tasks("noperm-1"))
        .await
        .unwrap_err();
    println!("publish as a user without permissions: {err}");
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    let text = err.to_string();
    assert!(text.contains("amqp:unauthorized-access"), "{text}");
    assert!(text.contains("lacks permissions"), "{text}");
    assert!(text.contains("ServiceBusConnection"), "{text}");
    assert!(!text.contains("noperm-pass"), "{text}");
    for name in queues.all() {
        assert!(receive(name, 1, 0.5).is_empty(), "{name}");
    }
}

/// Deletes a broker user when dropped.
struct DeleteUser(String);

impl Drop for DeleteUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_user", &self.0])
            .output();
    }
}
