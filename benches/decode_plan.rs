//! Criterion micro-benchmarks: decode (invocation parse + `decode_event`) and plan, per alert shape.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use defender_responder::adapters::MemoryLedger;
use defender_responder::decode::{decode_body, decode_event, decode_event_json, EventKind};
use defender_responder::invoke::BorrowedInvokeRequest;
use defender_responder::services::Registry;
use serde_json::{json, Value};

/// The shapes: (label, fixture). Event Grid + REST camelCase, Event Grid + flat PascalCase,
/// CloudEvents, one per service.
const SHAPES: &[(&str, &str)] = &[
    ("eg_rest_keyvault", "keyvault-KV_UserAnomaly-egrest.json"),
    ("eg_flat_keyvault", "keyvault-KV_TORAccess-egwfa.json"),
    ("eg_rest_dns", "dns-AzureDNS_DarkWebProxy-egrest.json"),
    ("eg_flat_arm", "arm-ARM_Azurite-egwfa.json"),
    (
        "cloudevent_arm",
        "arm-ARM_MicroBurst.RunCodeOnBehalf-ce.json",
    ),
];

fn event_of(fixture: &str) -> Value {
    let bytes = std::fs::read(common::corpus::fixture_dir().join(fixture)).expect("fixture");
    match serde_json::from_slice::<Value>(&bytes).expect("fixture JSON") {
        Value::Array(mut items) => items.remove(0),
        other => other,
    }
}

fn invocation(event: &Value, string_form: bool) -> Vec<u8> {
    let event_value = if string_form {
        Value::String(event.to_string())
    } else {
        event.clone()
    };
    json!({"Data": {"event": event_value},
           "Metadata": {"sys": {"MethodName": "DefenderAlert"}, "data": event.get("data").cloned().unwrap_or(Value::Null)}})
    .to_string()
    .into_bytes()
}

fn decode_invocation(body: &[u8]) -> defender_responder::decode::InboundEvent {
    // As `/DefenderAlert` reads it: the payload in place, the event decoded from it.
    let request = BorrowedInvokeRequest::parse(body).expect("invocation");
    decode_event_json(request.binding("event").expect("binding"), 0)
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (label, fixture) in SHAPES {
        let event = event_of(fixture);
        for (form, string_form) in [("object", false), ("string", true)] {
            let body = invocation(&event, string_form);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(format!("{label}/{form}"), |b| {
                b.iter(|| decode_invocation(black_box(&body)))
            });
        }
    }
    let batch = std::fs::read(common::corpus::fixture_dir().join("eventgrid-batch-mixed3.json"))
        .expect("batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("webhook_batch_mixed3", |b| {
        b.iter(|| decode_body(black_box(&batch)))
    });
    group.finish();
}

fn plan(c: &mut Criterion) {
    let registry = Registry::standard();
    let pipeline = common::corpus::pipeline();
    let policy = pipeline.policy().clone();
    let ledger = MemoryLedger::default();
    let mut group = c.benchmark_group("plan");
    for (label, fixture) in SHAPES {
        let inbound = decode_event(&event_of(fixture), 0);
        let EventKind::Alert(decoded) = &inbound.kind else {
            panic!("{fixture} is not an alert")
        };
        group.bench_function(format!("{label}/registry_plan"), |b| {
            b.iter(|| {
                let alert = black_box(&decoded.alert);
                let mut plan = registry.route(alert).plan(alert, &policy);
                policy.finalize(alert, &mut plan);
                plan
            })
        });
        group.bench_function(format!("{label}/assess"), |b| {
            b.iter(|| {
                pipeline
                    .assess(black_box(&inbound), &ledger)
                    .expect("assess")
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Short: the whole suite runs in a few minutes; criterion still reports its confidence.
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = decode, plan }
criterion_main!(benches);
