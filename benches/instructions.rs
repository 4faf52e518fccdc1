//! Instruction-count target for callgrind: decodes and plans one fixed alert N times (argument, default 1000).

mod common;

use std::hint::black_box;

use defender_responder::adapters::MemoryLedger;
use defender_responder::decode::decode_event;
use defender_responder::invoke::InvokeRequest;
use serde_json::{json, Value};

/// The fixed alert: Event Grid schema, REST camelCase shape, Key Vault (the commonest path).
pub const FIXTURE: &str = "keyvault-KV_UserAnomaly-egrest.json";

fn main() {
    let iterations: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(1000);
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
        let request: InvokeRequest = serde_json::from_slice(black_box(&body)).expect("invocation");
        let inbound = decode_event(request.binding("event").expect("binding"), 0);
        let report = pipeline.assess(&inbound, &ledger).expect("assess");
        tasks += black_box(report).tasks.len();
    }
    println!("{iterations} iterations, {tasks} tasks");
}
