//! Message ids never change: every fixture plans exactly the ids recorded in
//! `tests/fixtures/message_ids.json`, so a redelivery across an upgrade is still deduplicated.
//!
//! New fixtures are recorded with `UPDATE_MESSAGE_IDS=1 cargo test --test playbooks
//! message_ids`; recorded ones are never rewritten, and a difference is allowed only when
//! listed in [`ALLOWED_CHANGES`] with its reason.

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
                        ids.insert(format!(
                            "{} {} {}",
                            task.message_id, task.action, task.target
                        ));
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
    let text = std::fs::read_to_string(recorded_path()).expect("tests/fixtures/message_ids.json");
    let mut recorded: Recorded = serde_json::from_str(&text).expect("message_ids.json parses");
    if std::env::var_os("UPDATE_MESSAGE_IDS").is_some() {
        // Records fixtures not recorded yet; a recorded fixture is never rewritten (its ids
        // are what earlier versions published).
        for (policy, fixtures) in &planned {
            let recorded_fixtures = recorded.entry(policy.clone()).or_default();
            for (fixture, events) in fixtures {
                recorded_fixtures
                    .entry(fixture.clone())
                    .or_insert_with(|| events.clone());
            }
        }
        let text = serde_json::to_string_pretty(&recorded).expect("serialisable");
        std::fs::write(recorded_path(), text + "\n").expect("message_ids.json written");
        return;
    }
    let mut differences: Vec<String> = Vec::new();
    let empty = BTreeMap::new();
    let no_ids = BTreeSet::new();
    for (policy, fixtures) in &recorded {
        let planned_fixtures = planned.get(policy).unwrap_or(&empty);
        for (fixture, events) in fixtures {
            let planned_events = planned_fixtures.get(fixture);
            for (event, lines) in events {
                let ids = |lines: &BTreeSet<String>| -> BTreeMap<String, String> {
                    lines
                        .iter()
                        .map(|line| {
                            let (id, rest) = line.split_once(' ').unwrap_or((line, ""));
                            (id.to_string(), rest.to_string())
                        })
                        .collect()
                };
                let want = ids(lines);
                let got = ids(planned_events
                    .and_then(|events| events.get(event))
                    .unwrap_or(&no_ids));
                for (id, what) in &want {
                    if !got.contains_key(id) && !allowed(fixture, what, Change::Removed) {
                        differences.push(format!("{policy} {fixture} {event}: lost {id} {what}"));
                    }
                }
                for (id, what) in &got {
                    if !want.contains_key(id) && !allowed(fixture, what, Change::Added) {
                        differences.push(format!("{policy} {fixture} {event}: new {id} {what}"));
                    }
                }
            }
        }
        for fixture in planned_fixtures.keys() {
            if !fixtures.contains_key(fixture) {
                differences.push(format!("{policy} {fixture}: not recorded (regenerate)"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} message id difference(s):\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// Whether a task's id was added or removed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Removed,
}

/// The differences the typed contract requires, each with its reason:
/// `(fixture, change, "action target" prefix, reason)`.
const ALLOWED_CHANGES: &[(&str, Change, &str, &str)] = &[];

fn allowed(fixture: &str, what: &str, change: Change) -> bool {
    ALLOWED_CHANGES.iter().any(|(name, kind, prefix, _reason)| {
        *name == fixture && *kind == change && what.starts_with(prefix)
    })
}
