//! Coverage of the playbook: every step id of playbook.md is carried out for some fixture, and
//! every task names only existing step ids and says why, against its concrete target; the
//! safety rules (simulated alerts, decisions, cancellations) hold for every fixture.

#[path = "playbooks/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};

use defender_responder::domain::{MessageId, Parameters, Queue, TaskStatus, PLAYBOOK_STEPS};
use defender_responder::pipeline::EventReport;

/// The reports of one fixture of the alert corpus under the default policy.
fn reports(name: &str) -> Vec<EventReport> {
    let (_, policy) = support::policies().remove(0);
    support::plan_all_corpora(&policy)
        .into_iter()
        .find(|(corpus, fixture, _)| corpus == "alerts" && fixture == name)
        .map(|(_, _, reports)| reports)
        .unwrap_or_else(|| panic!("no fixture alerts/{name}"))
}

#[test]
fn every_playbook_step_is_produced_by_some_fixture_under_the_default_policy() {
    let (_, policy) = support::policies().remove(0);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (corpus, fixture, reports) in support::plan_all_corpora(&policy) {
        for report in &reports {
            for task in &report.tasks {
                for step in &task.steps {
                    seen.entry(step.clone())
                        .or_insert_with(|| format!("{corpus}/{fixture}"));
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
        for (corpus, fixture, reports) in support::plan_all_corpora(&policy) {
            for report in &reports {
                for task in &report.tasks {
                    let context = format!(
                        "{policy_name}/{corpus}/{fixture}: {} on {}",
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
                    assert_eq!(task.action, task.parameters.action(), "{context}");
                    assert_eq!(task.target, task.parameters.target(), "{context}");
                    if task.queue.is_containment() {
                        assert!(
                            task.facts.is_empty() && task.checklist.is_empty(),
                            "{context}: containment carries prose for the worker: {:?} {:?}",
                            task.facts,
                            task.checklist
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_corpora_hold_simulated_alerts_of_every_service() {
    let (_, policy) = support::policies().remove(0);
    let mut services: BTreeSet<String> = BTreeSet::new();
    for (_, _, reports) in support::plan_all_corpora(&policy) {
        for report in &reports {
            if let Some(alert) = report.alert.as_ref().filter(|alert| alert.simulated) {
                if report.tasks.iter().any(|task| task.queue.is_containment()) {
                    services.insert(alert.service.to_string());
                }
            }
        }
    }
    for service in ["key_vault", "dns", "resource_manager"] {
        assert!(
            services.contains(service),
            "no simulated {service} alert with containment in the corpora: {services:?}"
        );
    }
}

#[test]
fn simulated_alerts_never_give_live_containment_under_any_policy() {
    let mut simulated_containment = 0;
    for (policy_name, policy) in support::policies() {
        for (corpus, fixture, reports) in support::plan_all_corpora(&policy) {
            for report in &reports {
                let simulated = report.alert.as_ref().is_some_and(|alert| alert.simulated);
                for task in report.tasks.iter().filter(|t| t.queue.is_containment()) {
                    if simulated {
                        simulated_containment += 1;
                    }
                    assert!(
                        !simulated || task.dry_run,
                        "{policy_name}/{corpus}/{fixture}: simulated alert gives live {} on {}",
                        task.action,
                        task.target
                    );
                }
            }
        }
    }
    assert!(
        simulated_containment > 0,
        "no simulated alert plans containment: the rule is not exercised"
    );
}

#[test]
fn pending_tasks_are_always_named_by_a_decision_request() {
    for (policy_name, policy) in support::policies() {
        for (corpus, fixture, reports) in support::plan_all_corpora(&policy) {
            for report in &reports {
                let asked: BTreeSet<&MessageId> = report
                    .tasks
                    .iter()
                    .flat_map(|task| match &task.parameters {
                        Parameters::RequestDecision { pending, .. } => pending.iter().collect(),
                        _ => Vec::new(),
                    })
                    .collect();
                for task in report
                    .tasks
                    .iter()
                    .filter(|t| t.status == TaskStatus::PendingApproval)
                {
                    assert!(
                        asked.contains(&task.message_id),
                        "{policy_name}/{corpus}/{fixture}: {} on {} is pending but no decision is asked",
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
    assert_eq!(notice.queue, Queue::Notification);
    let Parameters::NotifyStatusChange {
        cancel_pending_for_alert,
        cancelled,
        ..
    } = &notice.parameters
    else {
        panic!("not a status change: {:?}", notice.parameters);
    };
    assert_eq!(
        cancel_pending_for_alert,
        &original[0].tasks[0].alert.system_alert_id
    );
    assert!(cancelled.contains(&request.message_id));
    // An InProgress update publishes nothing.
    assert!(
        reports("arm-ARM_AnomalousRBACRoleAssignment-statusinprogress")[0]
            .tasks
            .is_empty()
    );
}
