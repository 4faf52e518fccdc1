//! Shared by the playbook tests: the fixture corpus, the example policies, and planning.

#![allow(dead_code)]

use std::path::PathBuf;

use defender_responder::adapters::MemoryLedger;
use defender_responder::decode::decode_body;
use defender_responder::pipeline::{EventReport, Pipeline};
use defender_responder::policy::file::parse_policy;
use defender_responder::policy::Policy;
use defender_responder::services::Registry;

/// The example policies the plans are snapshotted under, by name.
pub(crate) fn policies() -> Vec<(&'static str, Policy)> {
    vec![
        ("default", Policy::default()),
        (
            "strict",
            parse_policy(include_str!("../../examples/policy/strict.json")).expect("strict.json"),
        ),
        (
            "permissive",
            parse_policy(include_str!("../../examples/policy/permissive.json"))
                .expect("permissive.json"),
        ),
    ]
}

/// The fixture corpora: the alert corpus and the edge cases of the envelopes.
pub(crate) const CORPORA: &[&str] = &["alerts", "edge"];

/// Every fixture file of the alert corpus, sorted by name.
pub(crate) fn fixtures() -> Vec<PathBuf> {
    fixtures_in("alerts")
}

/// Every fixture file of one corpus (`tests/fixtures/<corpus>`), sorted by name.
pub(crate) fn fixtures_in(corpus: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(corpus);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "json")
                && path.file_name().is_some_and(|name| name != "EXPECTED.json")
        })
        .collect();
    files.sort();
    files
}

/// Plans the whole corpus in name order under one policy, with one shared memory of alerts
/// (so redeliveries are duplicates and closing updates find the alert they close).
pub(crate) fn plan_corpus(policy: &Policy) -> Vec<(String, Result<Vec<EventReport>, String>)> {
    plan_corpus_in("alerts", policy)
}

/// Plans one corpus (`tests/fixtures/<corpus>`) like [`plan_corpus`].
pub(crate) fn plan_corpus_in(
    corpus: &str,
    policy: &Policy,
) -> Vec<(String, Result<Vec<EventReport>, String>)> {
    let pipeline = Pipeline::new(Registry::standard(), policy.clone());
    let ledger = MemoryLedger::default();
    fixtures_in(corpus)
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("readable fixture");
            let result = match decode_body(&bytes) {
                Ok(events) => Ok(events
                    .iter()
                    .map(|event| {
                        let report = pipeline.assess(event, &ledger).expect("assess");
                        pipeline.remember(&report, &ledger).expect("remember");
                        report
                    })
                    .collect()),
                Err(err) => Err(err.to_string()),
            };
            (name, result)
        })
        .collect()
}
