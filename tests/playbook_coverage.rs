//! Coverage of the playbook: every step id of playbook.md is carried out for some fixture, and
//! every task names only existing step ids and says why, against its concrete target.

#[path = "playbooks/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};

use defender_responder::domain::{Queue, PLAYBOOK_STEPS};

#[test]
fn every_playbook_step_is_produced_by_some_fixture_under_the_default_policy() {
    let (_, policy) = support::policies().remove(0);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (fixture, result) in support::plan_corpus(&policy) {
        for report in result.unwrap_or_default() {
            for task in &report.tasks {
                for step in &task.steps {
                    seen.entry(step.clone()).or_insert_with(|| fixture.clone());
                }
            }
        }
    }
    let missing: Vec<&&str> = PLAYBOOK_STEPS
        .iter()
        .filter(|step| !seen.contains_key(**step))
        .collect();
    assert!(missing.is_empty(), "steps no fixture produces: {missing:?}");
}

#[test]
fn every_task_names_existing_steps_a_target_and_a_reason_under_every_policy() {
    let known: BTreeSet<&str> = PLAYBOOK_STEPS.iter().copied().collect();
    for (policy_name, policy) in support::policies() {
        for (fixture, result) in support::plan_corpus(&policy) {
            for report in result.unwrap_or_default() {
                for task in &report.tasks {
                    let context = format!(
                        "{policy_name}/{fixture}: {} on {}",
                        task.action, task.target
                    );
                    assert!(!task.steps.is_empty(), "{context}: no step");
                    for step in &task.steps {
                        assert!(
                            known.contains(step.as_str()),
                            "{context}: unknown step {step}"
                        );
                    }
                    assert!(!task.target.trim().is_empty(), "{context}: no target");
                    assert!(
                        task.steps
                            .iter()
                            .any(|step| task.reason.starts_with(step.as_str()))
                            || task.reason.contains(':'),
                        "{context}: reason does not cite its step: {}",
                        task.reason
                    );
                    assert_eq!(task.queue, task.action.queue(), "{context}");
                }
            }
        }
    }
}

#[test]
fn simulated_alerts_never_give_live_containment_under_any_policy() {
    for (policy_name, policy) in support::policies() {
        for (fixture, result) in support::plan_corpus(&policy) {
            for report in result.unwrap_or_default() {
                let simulated = report.alert.as_ref().is_some_and(|alert| alert.simulated);
                for task in report
                    .tasks
                    .iter()
                    .filter(|t| t.queue != Queue::Notification)
                {
                    assert!(
                        !simulated || task.dry_run,
                        "{policy_name}/{fixture}: {}",
                        task.action
                    );
                }
            }
        }
    }
}

#[test]
fn pending_tasks_are_always_named_by_a_decision_request() {
    for (policy_name, policy) in support::policies() {
        for (fixture, result) in support::plan_corpus(&policy) {
            for report in result.unwrap_or_default() {
                let asked: BTreeSet<String> = report
                    .tasks
                    .iter()
                    .filter(|t| t.action.as_str() == "request_decision")
                    .flat_map(|t| {
                        t.facts
                            .get("pending_message_ids")
                            .map(|ids| ids.split(',').map(str::to_string).collect::<Vec<_>>())
                            .unwrap_or_default()
                    })
                    .collect();
                for task in report
                    .tasks
                    .iter()
                    .filter(|t| t.status == defender_responder::domain::TaskStatus::PendingApproval)
                {
                    assert!(
                        asked.contains(task.message_id.as_str()),
                        "{policy_name}/{fixture}: {} on {} is pending but no decision is asked",
                        task.action,
                        task.target
                    );
                }
            }
        }
    }
}

#[test]
fn closing_a_planned_alert_cancels_its_pending_decisions_and_starts_nothing() {
    let (_, policy) = support::policies().remove(0);
    let corpus = support::plan_corpus(&policy);
    let reports = |name: &str| {
        corpus
            .iter()
            .find(|(fixture, _)| fixture == name)
            .and_then(|(_, result)| result.clone().ok())
            .expect("fixture planned")
    };
    let original = reports("keyvault-KV_ListGetAnomaly-egwfa");
    let request = original[0]
        .tasks
        .iter()
        .find(|t| t.action.as_str() == "request_decision")
        .expect("the original plan asks for decisions");
    let closing = reports("keyvault-KV_ListGetAnomaly-statusresolved");
    let tasks = &closing[0].tasks;
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    let notice = &tasks[0];
    assert_eq!(notice.action.as_str(), "notify_status_change");
    assert_eq!(notice.queue, Queue::Notification);
    assert_eq!(
        notice.facts["cancel_pending_for_alert"],
        original[0].tasks[0].alert.system_alert_id
    );
    assert!(notice.facts["cancelled_message_ids"].contains(request.message_id.as_str()));
    // An InProgress update publishes nothing.
    assert!(
        reports("arm-ARM_AnomalousRBACRoleAssignment-statusinprogress")[0]
            .tasks
            .is_empty()
    );
}
