//! Shared by the playbook tests: the fixture corpus, the example policies, and planning.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

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
            parse_policy(
                include_str!("../../examples/policy/strict.json"),
                &Registry::standard().steps(),
            )
            .expect("strict.json"),
        ),
        (
            "permissive",
            parse_policy(
                include_str!("../../examples/policy/permissive.json"),
                &Registry::standard().steps(),
            )
            .expect("permissive.json"),
        ),
    ]
}

/// The fixture corpora: the alert corpus, the edge cases of the envelopes, simulated and
/// sample alerts, and real payloads of other publishers.
pub(crate) const CORPORA: &[&str] = &["alerts", "edge", "simulated", "payloads"];

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

/// What `tests/fixtures/<corpus>/EXPECTED.json` says of a fixture's body: `Some(true)` it
/// must be refused (`"error": true`), `Some(false)` it must decode, `None` it yields no
/// event (`"events": []`), so refusing it is right too.
pub(crate) fn expected_body_error(corpus: &str, fixture: &str) -> Option<bool> {
    static EXPECTED: OnceLock<BTreeMap<&'static str, serde_json::Value>> = OnceLock::new();
    let all = EXPECTED.get_or_init(|| {
        CORPORA
            .iter()
            .map(|corpus| {
                let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures")
                    .join(corpus)
                    .join("EXPECTED.json");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                let value = serde_json::from_str(&text)
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                (*corpus, value)
            })
            .collect()
    });
    let expected = &all[corpus];
    let path = format!("tests/fixtures/{corpus}/EXPECTED.json");
    let Some(entry) = expected.get(format!("{fixture}.json")) else {
        panic!("{corpus}/{fixture}.json has no entry in {path}");
    };
    if entry["error"].as_bool() == Some(true) {
        Some(true)
    } else if entry["events"].as_array().is_some_and(Vec::is_empty) {
        None
    } else {
        Some(false)
    }
}

/// The reports of one planned fixture. A fixture whose body fails to decode yields none,
/// but only when EXPECTED.json says it must fail; any other failure panics naming it.
pub(crate) fn reports_of<'a>(
    corpus: &str,
    fixture: &str,
    result: &'a Result<Vec<EventReport>, String>,
) -> &'a [EventReport] {
    let expected_error = expected_body_error(corpus, fixture);
    match (result, expected_error) {
        (Ok(_), Some(true)) => {
            panic!("{corpus}/{fixture}: EXPECTED.json says its body is refused, but it decoded")
        }
        (Ok(reports), _) => reports,
        (Err(_), Some(true) | None) => &[],
        (Err(err), Some(false)) => panic!("{corpus}/{fixture}: the body did not decode: {err}"),
    }
}

/// Every corpus planned under one policy: `(corpus, fixture, reports)`, failures named.
pub(crate) fn plan_all_corpora(policy: &Policy) -> Vec<(String, String, Vec<EventReport>)> {
    let mut out = Vec::new();
    for corpus in CORPORA {
        for (fixture, result) in plan_corpus_in(corpus, policy) {
            let reports = reports_of(corpus, &fixture, &result).to_vec();
            out.push((corpus.to_string(), fixture, reports));
        }
    }
    out
}
