//! Instruction-count target for callgrind: decodes and plans one fixed alert N times (argument,
//! default 1000); with `--full`, sends N distinct 9 KB Key Vault invocations through the whole
//! in-process intake path instead (the `DefenderAlert` route: extractor, decode, plan, the
//! embedded store's durable write, the reply), HTTP parsing and sockets excepted.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request as HttpRequest;
use defender_responder::adapters::{EmbeddedStore, MemoryLedger, QueueNames};
use defender_responder::decode::decode_event_json;
use defender_responder::invoke::BorrowedInvokeRequest;
use defender_responder::state::AppState;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The server's allocator (handlers/main.rs), so the counts are those of the shipped binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fixed alert: Event Grid schema, REST camelCase shape, Key Vault (the commonest path).
pub const FIXTURE: &str = "keyvault-KV_UserAnomaly-egrest.json";

fn main() {
    let iterations: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(1000);
    if std::env::args().any(|arg| arg == "--full") {
        return full_path(iterations);
    }
    let bytes = std::fs::read(common::corpus::fixture_dir().join(FIXTURE)).expect("fixture");
    let event = match serde_json::from_slice::<Value>(&bytes).expect("fixture JSON") {
        Value::Array(mut items) => items.remove(0),
        other => other,
    };
    let body = json!({"Data": {"event": event},
                      "Metadata": {"sys": {"MethodName": "DefenderAlert"}, "data": event.get("data").cloned().unwrap_or(Value::Null)}})
    .to_string()
    .into_bytes();
    let pipeline = common::corpus::pipeline();
    let ledger = MemoryLedger::default();
    let mut tasks = 0;
    for _ in 0..iterations {
        // As `/DefenderAlert` reads it: the payload in place, the event decoded from it.
        let request = BorrowedInvokeRequest::parse(black_box(&body)).expect("invocation");
        let inbound = decode_event_json(request.binding("event").expect("binding"), 0);
        let report = pipeline.assess(&inbound, &ledger).expect("assess");
        tasks += black_box(report).tasks.len();
    }
    println!("{iterations} iterations, {tasks} tasks");
}

/// `iterations` distinct Key Vault alerts (9 KB, 9 tasks each) through the router of `serve`
/// on the embedded store (in `BENCH_STORE_DIR`, default `/dev/shm`: the instructions are the
/// same on any disk, the waiting is not).
fn full_path(iterations: u64) {
    let alerts = common::corpus::key_vault(1, 9 * 1024, 9);
    let request = common::requests::invocation(&alerts[0], false, 0);
    let body_start = request.bytes.len() - request.body_len;
    let base = std::env::var("BENCH_STORE_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = std::path::Path::new(&base).join(format!("defender-instr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(
        EmbeddedStore::open(&dir.join("store.sqlite3"), QueueNames::default()).expect("store"),
    );
    let state = AppState::new(common::corpus::pipeline(), store.clone(), store.clone());
    let app = defender_responder::app(state);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut reply_bytes = 0;
    runtime.block_on(async {
        let mut buffer = request.bytes.clone();
        for index in 0..iterations {
            request.patch(&mut buffer, 1_000 + index * 100);
            let http = HttpRequest::post("/DefenderAlert")
                .header("content-type", "application/json")
                .header("x-azure-functions-invocationid", "bench")
                .body(Body::from(buffer[body_start..].to_vec()))
                .expect("request");
            let response = app.clone().oneshot(http).await.expect("response");
            assert!(response.status().is_success(), "{}", response.status());
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            reply_bytes += black_box(bytes).len();
        }
    });
    let queued: u64 = store.counts().expect("counts").iter().map(|(_, n)| n).sum();
    let checkpoints = store.checkpoint_stats();
    println!(
        "{iterations} alerts through the full path, {queued} tasks queued, {} bytes replied per alert, {} checkpoints beside the commits ({} pages, longest {} µs), {} caught up with the writers held back (holds: mean {} µs, longest {} µs)",
        reply_bytes / iterations.max(1) as usize,
        checkpoints.count,
        checkpoints.pages,
        checkpoints.longest_us,
        checkpoints.catch_ups,
        checkpoints.hold_us / checkpoints.catch_ups.max(1),
        checkpoints.longest_hold_us
    );
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
