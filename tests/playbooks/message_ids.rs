//! Message ids never change: every fixture plans exactly the ids recorded in
//! `tests/fixtures/message_ids.json`, so a redelivery across an upgrade is still deduplicated.
//!
//! Regenerate (only when a difference is intended and listed in [`ALLOWED_CHANGES`]) with
//! `UPDATE_MESSAGE_IDS=1 cargo test --test playbooks message_ids`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::support;

/// `policy → corpus/fixture → event id → sorted "message_id action target" lines`.
type Recorded = BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeSet<String>>>>;

fn recorded_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/message_ids.json")
}

fn plan_all() -> Recorded {
    let mut out = Recorded::new();
    for (policy_name, policy) in support::policies() {
        let per_policy = out.entry(policy_name.to_string()).or_default();
        for corpus in support::CORPORA {
            for (fixture, result) in support::plan_corpus_in(corpus, &policy) {
                let per_fixture = per_policy.entry(format!("{corpus}/{fixture}")).or_default();
                let Ok(reports) = result else { continue };
                for (index, report) in reports.iter().enumerate() {
                    let ids = per_fixture
                        .entry(format!("{index:03} {}", report.event_id))
                        .or_default();
                    for task in &report.tasks {
                        ids.insert(format!("{} {} {}", task.message_id, task.action, task.target));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_fixture_plans_exactly_the_recorded_message_ids() {
    let planned = plan_all();
    if std::env::var_os("UPDATE_MESSAGE_IDS").is_some() {
        let text = serde_json::to_string_pretty(&planned).expect("serialisable");
        std::fs::write(recorded_path(), text + "\n").expect("message_ids.json written");
        return;
    }
    let text = std::fs::read_to_string(recorded_path()).expect("tests/fixtures/message_ids.json");
    let recorded: Recorded = serde_json::from_str(&text).expect("message_ids.json parses");
    assert_eq!(planned, recorded);
}
