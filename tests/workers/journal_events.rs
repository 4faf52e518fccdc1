//! Every journal transition is a structured log event with the task's fields (what
//! Application Insights receives as a trace's custom dimensions).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use defender_responder::journal::{Journal, SqliteJournal, Verdict};
use serde_json::{json, Value};

use crate::support::pending_task;

/// The process's JSON log lines; a global subscriber, so every thread's events arrive.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        lines
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_transition_is_a_structured_log_event() {
    let lines = captured();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("j.sqlite3")).unwrap(),
    ));
    let task = pending_task("sys-log", "/subscriptions/s/kv-log");
    journal.receive(&task, "isolation-worker").await.unwrap();
    journal
        .await_approval(
            &task.message_id,
            json!({"method": "PATCH"}),
            "isolation-worker",
        )
        .await
        .unwrap();
    journal
        .decide(&task.message_id, Verdict::Reject, None, "owner@contoso.com")
        .await
        .unwrap();
    let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
    let moves: Vec<(String, String, String)> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["fields"]["message_id"] == task.message_id.as_str())
        .map(|event| {
            let fields = &event["fields"];
            assert_eq!(fields["message"], "journal: task state changed");
            assert_eq!(fields["action"], "enable_key_vault_firewall");
            assert_eq!(fields["system_alert_id"], "sys-log");
            let text = |name: &str| fields[name].as_str().unwrap().to_string();
            (text("from"), text("to"), text("actor"))
        })
        .collect();
    let expected = [
        ("none", "received", "isolation-worker"),
        ("received", "pending_approval", "isolation-worker"),
        ("pending_approval", "rejected", "owner@contoso.com"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(moves, expected);
}
