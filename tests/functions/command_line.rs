//! The command line as a person and a script meet it: a closed stdout is a normal end for every
//! command, `--format table|json`, and progress of `send` on stderr.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::end_to_end::{start, store_counts, BINARY};
use crate::helpers::root;

fn alert(name: &str) -> PathBuf {
    root().join("tests/fixtures/alerts").join(name)
}

/// Every fixture file: enough output that a reader who stops early leaves the writer blocked
/// on a full pipe.
fn all_alert_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/alerts"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .filter(|path| !path.ends_with("EXPECTED.json"))
        .collect();
    files.sort();
    files
}

/// Runs the command with stdout on a pipe whose reading end is already closed: the first write
/// fails with EPIPE, deterministically.
fn run_into_closed_pipe(command: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet_end(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what}: a closed stdout must end the command normally, got {:?}: {stderr}",
        output.status
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
}

/// The shell pipeline `BINARY ARGS... | head -c 10`, with bash's pipefail, so the exit status
/// is the binary's when head succeeds.
fn piped_into_head(args: &[String], store: Option<&Path>) -> (Output, usize) {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(r#"set -o pipefail; "$@" 2> "$ERR_FILE" | head -c 10 | wc -c"#)
        .arg("bash")
        .arg(BINARY)
        .args(args);
    let dir = tempfile::tempdir().unwrap();
    let err_file = dir.path().join("stderr");
    command.env("ERR_FILE", &err_file);
    if let Some(store) = store {
        command.env("RESPONDER_STORE_PATH", store);
    }
    let mut output = command.output().unwrap();
    let mut stderr = String::new();
    std::fs::File::open(&err_file)
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    output.stderr = stderr.into_bytes();
    let bytes = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    (output, bytes)
}

#[test]
fn plan_into_a_closed_pipe_ends_quietly() {
    let mut command = Command::new(BINARY);
    command.arg("plan").args(all_alert_files());
    assert_quiet_end("plan", &run_into_closed_pipe(&mut command));
    let mut command = Command::new(BINARY);
    command
        .args(["plan", "--format", "table"])
        .args(all_alert_files());
    assert_quiet_end("plan --format table", &run_into_closed_pipe(&mut command));
}

#[test]
fn plan_piped_into_head_ends_quietly() {
    let mut args = vec!["plan".to_string()];
    args.extend(all_alert_files().iter().map(|p| p.display().to_string()));
    let (output, bytes) = piped_into_head(&args, None);
    assert_eq!(bytes, 10);
    assert_quiet_end("plan | head -c 10", &output);
}

#[test]
fn queues_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    drop(
        defender_responder::adapters::EmbeddedStore::open(
            &store,
            defender_responder::adapters::QueueNames::default(),
        )
        .unwrap(),
    );
    for format in ["json", "table"] {
        let mut command = Command::new(BINARY);
        command
            .args(["queues", "--format", format])
            .env("RESPONDER_STORE_PATH", &store);
        assert_quiet_end(
            &format!("queues --format {format}"),
            &run_into_closed_pipe(&mut command),
        );
    }
    let (output, bytes) = piped_into_head(&["queues".to_string()], Some(&store));
    assert_eq!(bytes, 10);
    assert_quiet_end("queues | head -c 10", &output);
}

#[tokio::test]
async fn send_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let server = start(&store).await;
    let file = alert("eventgrid-batch-mixed3.json");
    let mut command = Command::new(BINARY);
    command
        .arg("send")
        .arg(&file)
        .args(["--url", &server.url, "--as", "webhook"]);
    assert_quiet_end("send", &run_into_closed_pipe(&mut command));
    let args: Vec<String> = [
        "send",
        "--url",
        &server.url,
        "--as",
        "host",
        &alert("keyvault-KV_SuspiciousIPAccess-egrest.json")
            .display()
            .to_string(),
    ]
    .map(String::from)
    .to_vec();
    let (output, bytes) = piped_into_head(&args, None);
    assert_eq!(bytes, 10);
    assert_quiet_end("send | head -c 10", &output);
}

#[test]
fn plan_as_a_table_shows_each_alert_its_tasks_by_queue_and_what_waits() {
    let output = Command::new(BINARY)
        .args(["plan", "--format", "table"])
        .arg(alert("keyvault-KV_SuspiciousIPAccess-egrest.json"))
        .arg(alert("keyvault-KV_PutGetAnomaly-malformed-truncated.json"))
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("PLANNED KV_SuspiciousIPAccess (Medium, Active) -> key_vault"),
        "{table}"
    );
    let rows: Vec<&str> = table
        .lines()
        .filter(|line| {
            let first = line.split_whitespace().next().unwrap_or("");
            ["notification", "isolation", "rotation"].contains(&first)
        })
        .collect();
    assert_eq!(rows.len(), 9, "{table}");
    // Grouped by queue, in the queues' order.
    let queues: Vec<&str> = rows
        .iter()
        .map(|row| row.split_whitespace().next().unwrap())
        .collect();
    let mut sorted = queues.clone();
    sorted.sort_by_key(|q| {
        ["notification", "isolation", "rotation"]
            .iter()
            .position(|x| x == q)
    });
    assert_eq!(queues, sorted);
    assert!(rows.iter().any(|row| row.contains("KV-2a")
        && row.contains("enable_key_vault_firewall")
        && row.contains("vaults/kv-contoso-payments")
        && row.ends_with("awaits decision")));
    // Every task states its reason.
    assert_eq!(table.matches("      why: ").count(), 9, "{table}");
    assert!(table.contains("error: invalid JSON at line"), "{table}");
    assert!(table.contains("Waiting for a decision (4)"), "{table}");
    assert!(
        table.contains("9 task(s): notification 5, isolation 2, rotation 2"),
        "{table}"
    );
    assert!(
        table.lines().all(|line| line.chars().count() <= 160),
        "{table}"
    );
}

#[test]
fn plan_prints_json_when_piped_or_asked() {
    for args in [vec!["plan"], vec!["plan", "--format", "json"]] {
        let output = Command::new(BINARY)
            .args(&args)
            .arg(alert("dns-AzureDNS_SinkholedDomain-egrest.json"))
            .output()
            .unwrap();
        assert!(output.status.success());
        let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(plan["inputs"][0]["events"][0]["outcome"], "planned");
    }
}

#[tokio::test]
async fn queues_as_a_table_counts_each_queue_and_shows_the_first_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let server = start(&store).await;
    let output = Command::new(BINARY)
        .arg("send")
        .arg(alert("keyvault-KV_SuspiciousIPAccess-egrest.json"))
        .args(["--url", &server.url, "--progress"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(
        progress.contains("send: 1/1 file(s), 0 failed"),
        "progress on stderr: {progress}"
    );
    drop(server);
    let counts = store_counts(&store);
    let output = Command::new(BINARY)
        .args(["queues", "--format", "table", "--peek", "2"])
        .env("RESPONDER_STORE_PATH", &store)
        .output()
        .unwrap();
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    for (name, count) in &counts {
        assert!(
            table
                .lines()
                .any(|line| line.split_whitespace().collect::<Vec<_>>()
                    == [name.as_str(), &count.to_string()]),
            "{name} {count}: {table}"
        );
    }
    assert!(table.contains("notification: the first 2 of 5"), "{table}");
    assert!(table.contains("KV_SuspiciousIPAccess"), "{table}");
    assert!(table.contains("      why: KV-1:"), "{table}");
}

#[tokio::test]
async fn send_reports_no_progress_unless_asked_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("store.sqlite3")).await;
    let output = Command::new(BINARY)
        .arg("send")
        .arg(alert("dns-AzureDNS_SinkholedDomain-egrest.json"))
        .args(["--url", &server.url])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stderr).contains("send: 1/1"));
}

#[test]
fn plan_prints_a_table_on_a_terminal() {
    // python3's pty module gives the binary a terminal for stdout (and copies what it prints).
    let output = Command::new("python3")
        .args([
            "-c",
            "import pty, sys; pty.spawn(sys.argv[1:])",
            BINARY,
            "plan",
        ])
        .arg(alert("dns-AzureDNS_SinkholedDomain-egrest.json"))
        .output()
        .expect("python3 runs");
    assert!(output.status.success());
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains("PLANNED AzureDNS_SinkholedDomain"),
        "a table on a terminal: {screen}"
    );
    assert!(!screen.trim_start().starts_with('{'), "{screen}");
}
