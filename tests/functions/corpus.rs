//! Every fixture of the shared corpus and of the edge corpus is handled as its EXPECTED.json says.

use std::collections::BTreeMap;
use std::path::PathBuf;

use defender_responder::cli::{plan_files, PlanInputReport};
use defender_responder::domain::{Queue, PLAYBOOK_STEPS};
use defender_responder::pipeline::{EventReport, Outcome};
use defender_responder::policy::Policy;
use serde_json::Value;

use crate::helpers::{fixture_json, root};

fn plan(folder: &str, files: &[&str]) -> Vec<PlanInputReport> {
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| root().join("tests/fixtures").join(folder).join(f))
        .collect();
    let (output, unreadable) = plan_files(&paths, &Policy::default()).unwrap();
    assert!(!unreadable);
    output.inputs
}

fn containment(report: &EventReport) -> Vec<&defender_responder::domain::Task> {
    report
        .tasks
        .iter()
        .filter(|task| task.queue != Queue::Notification)
        .collect()
}

fn check_tasks_are_traceable(file: &str, report: &EventReport) {
    for task in &report.tasks {
        assert!(
            !task.steps.is_empty(),
            "{file}: task {} names no step",
            task.action
        );
        for step in &task.steps {
            assert!(
                PLAYBOOK_STEPS.contains(&step.as_str()),
                "{file}: step {step} is not in playbook.md"
            );
        }
        assert!(
            !task.reason.trim().is_empty(),
            "{file}: task {} has no reason",
            task.action
        );
        assert!(
            task.message_id.as_str().starts_with("dr-"),
            "{file}: bad message id"
        );
        assert!(
            !task.target.trim().is_empty(),
            "{file}: task {} has no target",
            task.action
        );
    }
}

fn check_shared_event(file: &str, index: usize, want: &Value, got: &EventReport) {
    let action = want["action"]
        .as_str()
        .unwrap_or_else(|| panic!("{file} event {index}: EXPECTED.json gives no \"action\""));
    let ctx = format!(
        "{file} event {index} ({action}): {:?} {}",
        got.outcome, got.reason
    );
    let service = match file.split('-').next().unwrap() {
        "keyvault" => Some("key_vault"),
        "dns" => Some("dns"),
        "arm" => Some("resource_manager"),
        _ => None,
    };
    check_tasks_are_traceable(file, got);
    let steps: Vec<&str> = got
        .tasks
        .iter()
        .flat_map(|t| t.steps.iter().map(String::as_str))
        .collect();
    if action == "dispatch" {
        assert_eq!(got.outcome, Outcome::Planned, "{ctx}");
        assert!(!got.tasks.is_empty(), "{ctx}");
        if let Some(service) = service {
            assert_eq!(
                got.alert.as_ref().unwrap().service.as_str(),
                service,
                "{ctx}"
            );
            let contact = match service {
                "key_vault" => "KV-1",
                "dns" => "DNS-1",
                _ => "ARM-1",
            };
            assert!(steps.contains(&contact), "{ctx}: no {contact} in {steps:?}");
            if service == "dns" {
                assert!(
                    steps.iter().any(|s| s.starts_with("DNS-2")),
                    "{ctx}: no DNS-2 in {steps:?}"
                );
            }
        }
        // Dispatch rows of EXPECTED.json name the alert type they expect.
        let alert_type = want["alertType"].as_str().unwrap_or_else(|| {
            panic!("{file} event {index}: EXPECTED.json dispatch row gives no \"alertType\"")
        });
        if [
            "KV_SuspiciousIPAccess",
            "KV_TORAccess",
            "KV_UnusualAccessSuspiciousIP",
        ]
        .contains(&alert_type)
        {
            assert!(
                steps.contains(&"KV-2a") && steps.contains(&"KV-4a"),
                "{ctx}: {steps:?}"
            );
        }
        assert_eq!(
            got.alert.as_ref().unwrap().system_alert_id,
            want["systemAlertId"].as_str().unwrap(),
            "{ctx}"
        );
    } else if action.starts_with("drop-duplicate") {
        assert_eq!(got.outcome, Outcome::Duplicate, "{ctx}");
        assert!(got.tasks.is_empty(), "{ctx}");
    } else if action.starts_with("status-update") {
        assert_eq!(got.outcome, Outcome::StatusUpdate, "{ctx}");
        assert!(containment(got).is_empty(), "{ctx}");
    } else if action.starts_with("fetch")
        || action.starts_with("ignore")
        || action.starts_with("not an alert")
    {
        assert!(
            matches!(got.outcome, Outcome::Ignored | Outcome::Rejected),
            "{ctx}"
        );
        assert!(got.tasks.is_empty(), "{ctx}");
    } else if action.starts_with("reject") {
        assert!(
            matches!(got.outcome, Outcome::Rejected | Outcome::Planned),
            "{ctx}"
        );
        // Degraded, not lost: the wrong fields are named in warnings.
        if got.outcome == Outcome::Planned {
            assert!(!got.warnings.is_empty(), "{ctx}");
        }
    } else {
        // Undocumented or unhandled types: a notification-only plan, never containment.
        assert_eq!(got.outcome, Outcome::Planned, "{ctx}");
        assert_eq!(
            got.alert.as_ref().unwrap().service.as_str(),
            "unknown",
            "{ctx}"
        );
        assert!(containment(got).is_empty(), "{ctx}");
        assert!(!got.tasks.is_empty(), "{ctx}");
    }
}

#[test]
fn every_shared_fixture_is_handled_as_expected() {
    let expected = fixture_json("alerts/EXPECTED.json");
    let expected = expected.as_object().unwrap();
    assert_eq!(expected.len(), 69);
    // Redelivery pairs go through one duplicate memory, in order, as check-corpus runs them.
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for file in expected.keys() {
        let key = ["-republish", "-dupdelivery"]
            .iter()
            .find_map(|marker| file.find(marker).map(|at| file[..at].to_string()))
            .unwrap_or_else(|| file.clone());
        groups.entry(key).or_default().push(file);
    }
    let mut checked = 0;
    for files in groups.values() {
        let inputs = plan("alerts", files);
        for (file, input) in files.iter().zip(&inputs) {
            let want = &expected[*file];
            let want_events = want["events"].as_array().unwrap();
            if want_events.is_empty() {
                assert!(
                    input.events.iter().all(|e| e.tasks.is_empty()),
                    "{file}: tasks from a non-alert"
                );
                assert!(
                    input.error.is_some()
                        || input
                            .events
                            .iter()
                            .all(|e| matches!(e.outcome, Outcome::Rejected | Outcome::Ignored)),
                    "{file}: neither an error nor rejected/ignored events"
                );
            } else {
                assert_eq!(input.events.len(), want_events.len(), "{file}");
                for (index, (want, got)) in want_events.iter().zip(&input.events).enumerate() {
                    check_shared_event(file, index, want, got);
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 69);
}

#[test]
fn every_edge_fixture_is_handled_as_expected() {
    let expected = fixture_json("edge/EXPECTED.json");
    for (file, want) in expected.as_object().unwrap() {
        let input = plan("edge", &[file]).remove(0);
        if want["error"].as_bool().unwrap() {
            let error = input
                .error
                .as_deref()
                .unwrap_or_else(|| panic!("{file}: expected a file-level error"));
            assert!(error.len() > 10, "{file}: {error}");
            assert!(input.events.is_empty(), "{file}");
            continue;
        }
        let want_events = want["events"].as_array().unwrap();
        assert_eq!(input.events.len(), want_events.len(), "{file}");
        for (index, (want, got)) in want_events.iter().zip(&input.events).enumerate() {
            let ctx = format!("{file} event {index}: {:?} {}", got.outcome, got.reason);
            let outcome = serde_json::to_value(got.outcome).unwrap();
            assert_eq!(outcome, want["outcome"], "{ctx}");
            if let Some(service) = want.get("service") {
                assert_eq!(
                    got.alert.as_ref().unwrap().service.as_str(),
                    service.as_str().unwrap(),
                    "{ctx}"
                );
            }
            if want.get("no_live_containment").is_some() {
                assert!(
                    !containment(got).is_empty(),
                    "{ctx}: simulated alerts still plan containment, as dry runs"
                );
                assert!(containment(got).iter().all(|t| t.dry_run), "{ctx}");
            }
            if want.get("no_containment").is_some() {
                assert!(containment(got).is_empty(), "{ctx}");
            }
            check_tasks_are_traceable(file, got);
        }
    }
}

#[test]
fn plans_are_deterministic_across_runs() {
    let first = plan("alerts", &["eventgrid-batch-mixed3.json"]);
    let second = plan("alerts", &["eventgrid-batch-mixed3.json"]);
    let ids = |inputs: &[PlanInputReport]| -> Vec<String> {
        inputs[0]
            .events
            .iter()
            .flat_map(|e| e.tasks.iter().map(|t| t.message_id.to_string()))
            .collect()
    };
    assert!(!ids(&first).is_empty());
    assert_eq!(ids(&first), ids(&second));
}
