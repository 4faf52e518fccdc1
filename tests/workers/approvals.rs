//! The decision endpoint over real HTTP, and the operator commands of the binary.

use std::sync::Arc;

use defender_responder::adapters::{EmbeddedStore, QueueNames};
use defender_responder::approval::{ApprovalKey, ApprovalSettings, ApproverIdentity, DecisionDesk};
use defender_responder::domain::MessageId;
use defender_responder::journal::{Journal, SqliteJournal, TaskState, Verdict};
use defender_responder::pipeline::Pipeline;
use defender_responder::policy::Policy;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use serde_json::{json, Value};
use time::OffsetDateTime;
use url::Url;

use crate::support::pending_task;

const KEY: &str = "decision-link-key-for-tests-0123456789abcdef";

struct Server {
    base: String,
    journal: Journal,
    desk: DecisionDesk,
    id: MessageId,
    _dir: tempfile::TempDir,
}

/// A handler serving the decision endpoint on a free loopback port, with one pending task.
async fn server(identity: ApproverIdentity) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite3");
    let store = Arc::new(EmbeddedStore::open(&path, QueueNames::default()).unwrap());
    // The store holds its file exclusively; the journal has a file of its own.
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("store.journal.sqlite3")).unwrap(),
    ));
    let task = pending_task("sys-decide", "/subscriptions/s/kv-d");
    journal.receive(&task, "isolation-worker").await.unwrap();
    let preview = json!({"method": "PATCH",
        "url": "https://management.azure.com/subscriptions/s/kv-d?api-version=2023-07-01",
        "body": {"properties": {"networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices"}}},
        "note": "<script>alert(1)</script>"});
    journal
        .await_approval(&task.message_id, preview, "isolation-worker")
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = ApprovalSettings {
        key: ApprovalKey::parse(KEY).unwrap(),
        decision_url: Url::parse(&format!("{base}/api/decide")).unwrap(),
        ttl: std::time::Duration::from_secs(3600),
        identity,
        approvers: vec![],
    };
    let desk = DecisionDesk::new(journal.clone(), settings);
    let state = AppState::new(
        Pipeline::new(Registry::standard(), Policy::default()),
        store.clone(),
        store,
    )
    .with_decisions(desk.clone());
    tokio::spawn(async move {
        axum::serve(listener, defender_responder::app(state))
            .await
            .unwrap()
    });
    Server {
        base,
        journal,
        desk,
        id: task.message_id,
        _dir: dir,
    }
}

impl Server {
    async fn links(&self) -> (Url, Url) {
        let entry = self.journal.get(&self.id).await.unwrap().unwrap();
        let links = self.desk.links(&entry, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(links[0].0, Verdict::Approve);
        (links[0].1.clone(), links[1].1.clone())
    }

    async fn state(&self) -> TaskState {
        self.journal.get(&self.id).await.unwrap().unwrap().state
    }

    async fn post(&self, link: &Url, principal: Option<&str>) -> (u16, String) {
        let form: Vec<(String, String)> = link.query_pairs().into_owned().collect();
        let mut request = reqwest::Client::new()
            .post(format!("{}/api/decide", self.base))
            .form(&form);
        if let Some(name) = principal {
            request = request.header("X-MS-CLIENT-PRINCIPAL-NAME", name);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

#[tokio::test]
async fn get_shows_the_change_and_decides_nothing_and_post_decides_once() {
    let server = server(ApproverIdentity::Link).await;
    let (approve, _) = server.links().await;
    for _ in 0..2 {
        // A link scanner and then the person: both only look.
        let response = reqwest::get(approve.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        let page = response.text().await.unwrap();
        assert!(page.contains("the vault was read from an address it has never seen"));
        assert!(page.contains("networkAcls"), "the exact change is shown");
        assert!(page.contains("&lt;script&gt;"), "the preview is escaped");
        assert!(!page.contains("<script>"));
        assert_eq!(page.matches("<form method=\"post\"").count(), 2);
        assert!(page.contains(">Approve</button>") && page.contains(">Reject</button>"));
    }
    assert_eq!(server.state().await, TaskState::PendingApproval);

    let (status, page) = server.post(&approve, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Recorded: approve"), "{page}");
    assert_eq!(server.state().await, TaskState::Approved);

    let (status, page) = server.post(&approve, None).await;
    assert_eq!(status, 409, "a link is single-use");
    assert!(page.contains("already decided: approve by link"), "{page}");
    let response = reqwest::get(approve.clone()).await.unwrap();
    assert_eq!(response.status(), 409);
}

#[tokio::test]
async fn a_tampered_link_is_refused_and_changes_nothing() {
    let server = server(ApproverIdentity::Link).await;
    let (_, reject) = server.links().await;
    let tampered = Url::parse(&reject.as_str().replace("d=reject", "d=approve")).unwrap();
    let (status, page) = server.post(&tampered, None).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("signature does not match"), "{page}");
    let reject_page = reqwest::get(reject).await.unwrap().text().await.unwrap();
    assert!(
        !reject_page.contains(">Approve</button>"),
        "a reject link offers no approve"
    );
    assert_eq!(server.state().await, TaskState::PendingApproval);
}

#[tokio::test]
async fn behind_app_service_auth_the_signed_in_approver_must_be_a_recipient() {
    let server = server(ApproverIdentity::AppServiceAuth).await;
    let (approve, _) = server.links().await;
    let (status, _) = server.post(&approve, None).await;
    assert_eq!(status, 401);
    let (status, page) = server.post(&approve, Some("mallory@contoso.com")).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("mallory@contoso.com is not a recipient"),
        "{page}"
    );
    assert_eq!(server.state().await, TaskState::PendingApproval);
    let (status, page) = server.post(&approve, Some("owner@contoso.com")).await;
    assert_eq!(status, 200, "{page}");
    let entry = server.journal.get(&server.id).await.unwrap().unwrap();
    assert_eq!(entry.decision.unwrap().by, "owner@contoso.com");
}

fn binary(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_defender-responder"))
        .args(args)
        .env("RESPONDER_STORE_PATH", dir.join("store.sqlite3"))
        .env_remove("RESPONDER_JOURNAL")
        .env_remove("RESPONDER_JOURNAL_BLOB_ENDPOINT")
        .env_remove("AzureWebJobsStorage__accountName")
        .env_remove("AzureWebJobsStorage__blobServiceUri")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn operators_decide_and_read_the_journal_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // Where the binary finds the journal by default: next to its store, named after it.
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("store.journal.sqlite3")).unwrap(),
    ));
    let task = pending_task("sys-cli", "/subscriptions/s/kv-cli");
    journal.receive(&task, "w").await.unwrap();
    journal
        .await_approval(&task.message_id, json!({"method": "PATCH"}), "w")
        .await
        .unwrap();
    let id = task.message_id.as_str();

    let out = binary(dir.path(), &["decide", id, "reject", "--by", "oncall"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = binary(dir.path(), &["decide", id, "approve", "--by", "oncall"]);
    assert_eq!(out.status.code(), Some(2), "a second decision is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejected"));

    let out = binary(dir.path(), &["journal", "--task", id, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries[0]["state"], "rejected");
    assert_eq!(entries[0]["decision"]["by"], "operator:oncall");
    let out = binary(
        dir.path(),
        &["journal", "--alert", "sys-cli", "--format", "table"],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("UPDATED"), "{table}");
    assert!(
        table.contains("rejected") && table.contains("reject by operator:oncall"),
        "{table}"
    );
    assert!(
        table.contains("pending_approval -> rejected  by operator:oncall"),
        "{table}"
    );
}

#[tokio::test]
async fn other_methods_and_oversized_forms_are_refused() {
    let server = server(ApproverIdentity::Link).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/decide", server.base);
    let response = client.put(&url).body("m=x").send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
    let response = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("m={}", "a".repeat(64 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(
        response.status(),
        400,
        "a GET without a link names what is missing"
    );
    assert!(response.text().await.unwrap().contains("`m` is missing"));
    assert_eq!(server.state().await, TaskState::PendingApproval);
}
