//! The generic signed webhook as a notification channel: the receiver verifies every request
//! with the reference `standardwebhooks` package, and `webhook-id` is the message id.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use defender_responder::config::notify::ChannelSecret;
use defender_responder::notify::delivery::RetryPolicy;
use defender_responder::notify::{Notifier, Sent, WebhookSecret};
use defender_responder::policy::notifications::ChannelKind;
use serde_json::Value;

use super::support::{journal, notifications, planned, policy_with, settings};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct PythonReceiver {
    child: Child,
    port: u16,
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PythonReceiver {
    /// The workers' receiver (tests/workers/webhook_receiver.py), answering with `script`.
    fn start(script: &[&str]) -> PythonReceiver {
        let ready = Command::new("python3")
            .args(["-c", "import standardwebhooks"])
            .status()
            .expect("python3");
        if !ready.success() {
            let installed = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "standardwebhooks"])
                .status()
                .expect("pip");
            assert!(installed.success(), "pip install standardwebhooks failed");
        }
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/workers/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(path)
            .args(script)
            .env("WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap()
            .parse()
            .unwrap();
        PythonReceiver { child, port }
    }

    async fn log(&self) -> Vec<Value> {
        reqwest::get(format!("http://127.0.0.1:{}/log", self.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_signed_notification_verifies_with_standardwebhooks_and_carries_the_message_id() {
    let receiver = PythonReceiver::start(&["503", "200"]);
    let policy = policy_with("soar", ChannelKind::Webhook, None);
    let url = url::Url::parse(&format!("http://127.0.0.1:{}/hook", receiver.port)).unwrap();
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let notifier = Notifier::new(
        &policy,
        &settings("soar", ChannelSecret::Signed(url, secret)),
        None,
        None,
    )
    .unwrap()
    .with_retry(RetryPolicy {
        attempts: 3,
        initial_backoff: std::time::Duration::from_millis(50),
    });
    let tasks = notifications(&planned(&policy));
    let (journal, _dir) = journal();
    let results = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].1,
        Sent::Delivered {
            status: 200,
            attempts: 2
        }
    );
    let log = receiver.log().await;
    assert_eq!(log.len(), 2, "{log:#?}");
    let id = results[0].0.notification.message_id.as_str();
    for record in &log {
        assert_eq!(record["verified"], true, "{record}");
        assert_eq!(record["webhook_id"], id);
        assert_eq!(record["id"], id);
        assert_eq!(record["type"], "defender-responder.notification");
    }
    // Redelivered: nothing more is sent.
    assert!(notifier
        .deliver(&tasks, &journal, "test")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(receiver.log().await.len(), 2);
}
