//! Coverage of the playbook: every step id of playbook.md is carried out for some fixture, and
//! every task names only existing step ids and says why, against its concrete target; the
//! safety rules (simulated alerts, decisions, cancellations) hold for every fixture.

#[path = "playbooks/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};

use defender_responder::domain::{MessageId, Parameters, Queue, TaskStatus};
use defender_responder::pipeline::EventReport;
use defender_responder::services::Registry;

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
    // The playbook's steps are the registered handlers' (and the fallback's GEN-1).
    let missing: Vec<&str> = Registry::standard()
        .steps()
        .iter()
        .filter(|step| !seen.contains_key(*step))
        .collect();
    assert!(missing.is_empty(), "steps no fixture produces: {missing:?}");
}

#[test]
fn every_task_names_existing_steps_a_target_and_a_reason_under_every_policy() {
    let steps = Registry::standard().steps();
    let known: BTreeSet<&str> = steps.iter().collect();
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

/// The reports of one fixture of a corpus under the default policy.
fn reports_in(corpus: &str, name: &str) -> Vec<EventReport> {
    let (_, policy) = support::policies().remove(0);
    let results = support::plan_corpus_in(corpus, &policy);
    let (_, result) = results
        .iter()
        .find(|(fixture, _)| fixture == name)
        .unwrap_or_else(|| panic!("no fixture {corpus}/{name}"));
    support::reports_of(corpus, name, result).to_vec()
}

#[test]
fn every_small_corpus_plans_the_outcomes_and_services_its_expected_json_names() {
    let (_, policy) = support::policies().remove(0);
    for corpus in ["edge", "simulated", "payloads"] {
        let path = format!(
            "{}/tests/fixtures/{corpus}/EXPECTED.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
        let expected: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"));
        for (fixture, result) in support::plan_corpus_in(corpus, &policy) {
            let entry = &expected[format!("{fixture}.json")];
            let reports = support::reports_of(corpus, &fixture, &result);
            let want = entry["events"].as_array().unwrap_or_else(|| {
                panic!("{corpus}/EXPECTED.json: {fixture}.json has no \"events\" list")
            });
            assert_eq!(reports.len(), want.len(), "{corpus}/{fixture}: event count");
            for (index, (report, want)) in reports.iter().zip(want).enumerate() {
                let outcome = serde_json::to_value(report.outcome).expect("outcome");
                assert_eq!(
                    outcome, want["outcome"],
                    "{corpus}/{fixture} event {index}: {}",
                    report.reason
                );
                if let Some(service) = want.get("service") {
                    let got = report.alert.as_ref().map(|alert| alert.service.to_string());
                    assert_eq!(
                        got.as_deref(),
                        service.as_str(),
                        "{corpus}/{fixture} event {index}"
                    );
                }
            }
        }
    }
}

#[test]
fn resource_manager_alerts_naming_the_principal_in_other_keys_get_arm2_containment_and_a_decision()
{
    for (fixture, principal) in [
        (
            "arm-ARM_AnomalousServiceOperation.Execution-principalid",
            "7f0c3b1e-8a2d-4d6e-9b5f-2c4a6e8d0f13",
        ),
        (
            "arm-ARM_AnomalousServiceOperation.Persistence-secondaccount",
            "3d5e7f90-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
        ),
    ] {
        let reports = reports_in("payloads", fixture);
        let tasks = &reports[0].tasks;
        let delete = tasks
            .iter()
            .find(|task| task.action.as_str() == "delete_unfamiliar_account")
            .unwrap_or_else(|| panic!("{fixture}: no ARM-2a task: {tasks:#?}"));
        assert_eq!(delete.target, principal, "{fixture}");
        let Parameters::DeleteUnfamiliarAccount { principal: who } = &delete.parameters else {
            panic!("{fixture}: {:?}", delete.parameters);
        };
        assert!(
            matches!(
                who,
                defender_responder::domain::PrincipalRef::ObjectId {
                    kind: defender_responder::domain::PrincipalKind::ServicePrincipal,
                    ..
                }
            ),
            "{fixture}: a service operation's caller is a service principal: {who:?}"
        );
        let remove = tasks
            .iter()
            .find(|task| task.action.as_str() == "remove_role_assignments")
            .unwrap_or_else(|| panic!("{fixture}: no ARM-2b task"));
        assert!(remove.steps.contains(&"ARM-2b".to_string()));
        let request = tasks
            .iter()
            .find(|task| task.action.as_str() == "request_decision")
            .unwrap_or_else(|| panic!("{fixture}: no decision request"));
        let Parameters::RequestDecision { pending, .. } = &request.parameters else {
            panic!("{fixture}: {:?}", request.parameters);
        };
        assert!(pending.contains(&delete.message_id) && pending.contains(&remove.message_id));
    }
    let contact = &reports_in(
        "payloads",
        "arm-ARM_AnomalousServiceOperation.Execution-principalid",
    )[0]
    .tasks[0];
    assert_eq!(contact.facts["user_agent"], "python-requests/2.31.0");
    assert!(
        contact.reason.contains("sp-batch-automation"),
        "{}",
        contact.reason
    );
}

#[test]
fn the_nil_guid_and_invalid_addresses_are_never_targets_and_are_warned_about_by_field() {
    let nil = "00000000-0000-0000-0000-000000000000";
    for (policy_name, policy) in support::policies() {
        for (corpus, fixture, reports) in support::plan_all_corpora(&policy) {
            for report in &reports {
                for task in &report.tasks {
                    let text = serde_json::to_string(&task.parameters).expect("serialisable");
                    let activity = serde_json::to_string(&task.activity).expect("serialisable");
                    assert!(
                        !text.contains(nil)
                            && !activity.contains(nil)
                            && !task.target.contains(nil),
                        "{policy_name}/{corpus}/{fixture}: {} names the nil GUID",
                        task.action
                    );
                    assert!(!text.contains("00.00.00.00") && !activity.contains("00.00.00.00"));
                }
            }
        }
    }
    let reports = reports_in("payloads", "keyvault-KV_SuspiciousIPAccess-nilguid");
    let report = &reports[0];
    for field in [
        "extendedProperties.Attacker Object ID: \"00000000-0000-0000-0000-000000000000\"",
        "extendedProperties.Application ID: \"00000000-0000-0000-0000-000000000000\"",
        "extendedProperties.Attacker IP Address: \"00.00.00.00\"",
        "entities: ip entity address \"00.00.00.00\"",
    ] {
        assert!(
            report
                .warnings
                .iter()
                .any(|warning| warning.contains(field)),
            "no warning names {field}: {:#?}",
            report.warnings
        );
    }
    assert!(
        report
            .tasks
            .iter()
            .all(|task| task.action.as_str() != "restrict_principal"),
        "no principal to restrict"
    );
}

#[test]
fn the_rest_list_shape_is_planned_like_an_array_of_alerts() {
    let reports = reports_in("payloads", "rest-list-value");
    let types: Vec<&str> = reports
        .iter()
        .filter_map(|report| report.alert.as_ref().map(|alert| alert.alert_type.as_str()))
        .collect();
    assert_eq!(types, ["KV_UserAnomaly", "AzureDNS_DarkWeb"]);
    assert!(reports.iter().all(|report| !report.tasks.is_empty()));
}

#[test]
fn a_legacy_alert_without_alert_type_is_rejected_naming_the_field() {
    let reports = reports_in("payloads", "legacy-alertName");
    assert_eq!(reports.len(), 1);
    let reason = &reports[0].reason;
    assert!(
        reason.starts_with("data.properties.alertType is missing") && reason.contains("alertName"),
        "{reason}"
    );
}

#[test]
fn alerts_of_other_plans_cite_gen1_with_their_addresses_accounts_and_hosts() {
    for (corpus, fixture) in [
        ("payloads", "servers-VM_EICAR-otherplan"),
        ("alerts", "keyvault-KV_FutureDetectionV2-unknowntype"),
    ] {
        let reports = reports_in(corpus, fixture);
        let tasks = &reports[0].tasks;
        assert_eq!(tasks.len(), 1, "{corpus}/{fixture}: {tasks:#?}");
        assert_eq!(tasks[0].steps, ["GEN-1"], "{corpus}/{fixture}");
        assert!(!tasks[0].queue.is_containment());
        assert!(tasks[0].reason.starts_with("GEN-1:"));
    }
    let notice = &reports_in("payloads", "servers-VM_EICAR-otherplan")[0].tasks[0];
    assert_eq!(notice.facts["ip_addresses"], "10.40.2.9");
    assert_eq!(notice.facts["accounts"], "azureuser");
    assert_eq!(notice.facts["hosts"], "vm-batch-07");
    assert!(notice.facts["alert_uri"].starts_with("https://portal.azure.com/"));
}
