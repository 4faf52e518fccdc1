//! Unit tests of the policy: modes, thresholds, finalize, and the policy file's validation.

use super::*;
use crate::domain::{AlertRef, AlertStatus, Queue};
use crate::services::Registry;

/// Parses a policy file as start-up does: rules may name the standard registry's steps.
fn parse_policy(text: &str) -> Result<Policy, String> {
    file::parse_policy(text, &Registry::standard().steps())
}

fn alert(severity: Severity, alert_type: &str) -> SecurityAlert {
    SecurityAlert {
        alert_type: alert_type.to_string(),
        system_alert_id: "sys-1".into(),
        display_name: None,
        description: None,
        severity,
        status: AlertStatus::Active,
        intent: Vec::new(),
        resource_id: AzureResourceId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
        )
        .ok(),
        compromised_entity: None,
        tenant_ids: Vec::new(),
        entities: Vec::new(),
        extended_properties: BTreeMap::new(),
        remediation_steps: Vec::new(),
        alert_uri: None,
        start_time: None,
        end_time: None,
    }
}

fn plan_of(alert: &SecurityAlert) -> ResponsePlan {
    let alert_ref = AlertRef::new(alert, crate::services::KeyVault::NAME);
    let mut plan = ResponsePlan::new();
    plan.push(
        Task::example(
            &alert_ref,
            Action::ContactOwner,
            &["KV-1"],
            "kv",
            "KV-1: ask.",
        )
        .recipients(["owner@contoso.com"]),
    );
    plan.push(Task::example(
        &alert_ref,
        Action::EnableKeyVaultFirewall,
        &["KV-2a"],
        "kv",
        "KV-2a: firewall.",
    ));
    plan.push(Task::example(
        &alert_ref,
        Action::RotateSecret,
        &["KV-4a"],
        "a",
        "KV-4a: rotate.",
    ));
    plan.push(Task::example(
        &alert_ref,
        Action::RunAntimalwareScan,
        &["DNS-2a"],
        "vm",
        "DNS-2a: scan.",
    ));
    plan
}

fn finalized(policy: &Policy, alert: &SecurityAlert) -> Vec<Task> {
    let mut plan = plan_of(alert);
    policy.finalize(alert, &mut plan);
    plan.into_tasks()
}

fn find(tasks: &[Task], action: Action) -> Option<&Task> {
    tasks.iter().find(|task| task.action == action)
}

fn rule(
    action: Option<Action>,
    step: Option<&str>,
    mode: Mode,
    min: Option<Severity>,
) -> AutomationRule {
    AutomationRule {
        action,
        step: step.map(str::to_string),
        mode,
        min_severity: min,
        on_timeout: None,
    }
}

#[test]
fn defaults_wait_for_approval_except_the_scan_and_never_hold_notifications() {
    let alert = alert(Severity::High, "KV_SuspiciousIPAccess");
    let tasks = finalized(&Policy::default(), &alert);
    let firewall = find(&tasks, Action::EnableKeyVaultFirewall).unwrap();
    assert_eq!(firewall.status, TaskStatus::PendingApproval);
    assert_eq!(
        firewall.policy.as_ref().map(|p| p.rule.as_str()),
        Some("default_mode")
    );
    assert_eq!(
        find(&tasks, Action::RotateSecret).unwrap().status,
        TaskStatus::PendingApproval
    );
    let scan = find(&tasks, Action::RunAntimalwareScan).unwrap();
    assert_eq!(scan.status, TaskStatus::Ready);
    assert_eq!(
        scan.policy.as_ref().map(|p| p.rule.as_str()),
        Some("built-in default")
    );
    assert_eq!(
        find(&tasks, Action::ContactOwner).unwrap().status,
        TaskStatus::Ready
    );
}

#[test]
fn approval_publishes_pending_tasks_and_one_decision_request_naming_them() {
    let alert = alert(Severity::Medium, "KV_SuspiciousIPAccess");
    let tasks = finalized(&Policy::default(), &alert);
    let request = find(&tasks, Action::RequestDecision).expect("decision asked");
    assert_eq!(request.queue, Queue::Notification);
    assert_eq!(request.status, TaskStatus::Ready);
    let pending: Vec<&str> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::PendingApproval)
        .map(|t| t.message_id.as_str())
        .collect();
    assert_eq!(pending.len(), 2);
    let Parameters::RequestDecision { pending: asked, .. } = &request.parameters else {
        panic!("request_decision parameters: {:?}", request.parameters);
    };
    let asked: Vec<&str> = asked.iter().map(|id| id.as_str()).collect();
    assert_eq!(asked, pending);
    assert_eq!(request.steps, vec!["KV-2a", "KV-4a"]);
    assert_eq!(request.recipients, vec!["owner@contoso.com"]);
    assert_eq!(request.checklist.len(), 2);
}

#[test]
fn auto_runs_at_or_above_the_threshold_and_asks_below_it() {
    let policy = Policy {
        automation: vec![rule(
            Some(Action::EnableKeyVaultFirewall),
            None,
            Mode::Auto,
            Some(Severity::High),
        )],
        ..Policy::default()
    };
    let high = finalized(&policy, &alert(Severity::High, "KV_TORAccess"));
    let firewall = find(&high, Action::EnableKeyVaultFirewall).unwrap();
    assert_eq!(firewall.status, TaskStatus::Ready);
    assert_eq!(
        firewall.policy.as_ref().map(|p| p.rule.as_str()),
        Some("automation[0]")
    );
    let medium = finalized(&policy, &alert(Severity::Medium, "KV_TORAccess"));
    assert_eq!(
        find(&medium, Action::EnableKeyVaultFirewall)
            .unwrap()
            .status,
        TaskStatus::PendingApproval
    );
    // Unknown severity is below every threshold.
    let unknown = finalized(&policy, &alert(Severity::Unknown, "KV_TORAccess"));
    assert_eq!(
        find(&unknown, Action::EnableKeyVaultFirewall)
            .unwrap()
            .status,
        TaskStatus::PendingApproval
    );
}

#[test]
fn notify_only_drops_the_task_and_keeps_the_step_in_the_decision_checklist() {
    let policy = Policy {
        automation: vec![rule(None, Some("KV-4"), Mode::NotifyOnly, None)],
        ..Policy::default()
    };
    let tasks = finalized(&policy, &alert(Severity::High, "KV_TORAccess"));
    assert!(find(&tasks, Action::RotateSecret).is_none());
    let request = find(&tasks, Action::RequestDecision).unwrap();
    assert!(request.steps.contains(&"KV-4a".to_string()));
    assert!(request
        .checklist
        .iter()
        .any(|item| item.starts_with("By hand") && item.contains("rotate_secret")));
    let Parameters::RequestDecision { notify_only, .. } = &request.parameters else {
        panic!("request_decision parameters: {:?}", request.parameters);
    };
    assert!(notify_only
        .iter()
        .any(|step| step.action == Action::RotateSecret));
}

#[test]
fn approval_below_its_threshold_becomes_notify_only() {
    let rule = rule(None, Some("KV-2a"), Mode::Approval, Some(Severity::Medium));
    assert_eq!(rule.mode_for(Severity::Low), Mode::NotifyOnly);
    assert_eq!(rule.mode_for(Severity::Medium), Mode::Approval);
}

#[test]
fn rules_match_sub_steps_and_the_first_match_wins() {
    assert!(step_covers("KV-2", "KV-2a"));
    assert!(step_covers("dns-2", "DNS-2"));
    assert!(!step_covers("KV-2", "KV-3"));
    assert!(!step_covers("KV-2a", "KV-2"));
    let policy = Policy {
        automation: vec![
            rule(Some(Action::RotateSecret), None, Mode::Auto, None),
            rule(None, Some("KV-4"), Mode::NotifyOnly, None),
        ],
        ..Policy::default()
    };
    let tasks = finalized(&policy, &alert(Severity::Low, "KV_TORAccess"));
    assert_eq!(
        find(&tasks, Action::RotateSecret).unwrap().status,
        TaskStatus::Ready
    );
}

#[test]
fn simulated_alerts_and_dry_run_never_give_live_containment() {
    let everything_auto = Policy {
        default_mode: Mode::Auto,
        ..Policy::default()
    };
    let simulated = finalized(
        &everything_auto,
        &alert(Severity::High, "SIMULATED_KV_SuspiciousIPAccess"),
    );
    assert!(simulated
        .iter()
        .filter(|t| t.queue.is_containment())
        .all(|t| t.dry_run));
    let rehearsal = Policy {
        dry_run: true,
        ..everything_auto
    };
    let tasks = finalized(&rehearsal, &alert(Severity::High, "KV_TORAccess"));
    assert!(tasks
        .iter()
        .filter(|t| t.queue.is_containment())
        .all(|t| t.dry_run));
    assert!(tasks
        .iter()
        .filter(|t| !t.queue.is_containment())
        .all(|t| !t.dry_run));
}

#[test]
fn alerts_caused_by_the_responder_itself_are_never_automatic() {
    let mut own = alert(Severity::High, "KV_TORAccess");
    own.extended_properties
        .insert("Attacker Object ID".into(), "SELF-ID".into());
    let policy = Policy {
        default_mode: Mode::Auto,
        self_object_ids: vec!["self-id".into()],
        ..Policy::default()
    };
    let tasks = finalized(&policy, &own);
    for task in tasks.iter().filter(|t| t.queue.is_containment()) {
        assert_eq!(task.status, TaskStatus::PendingApproval, "{}", task.action);
        assert!(task.dry_run);
        assert!(task.policy.as_ref().is_some_and(|p| p.loop_protection));
        assert!(task.facts.is_empty());
    }
    assert!(find(&tasks, Action::RequestDecision).is_some());
}

#[test]
fn owners_resolve_by_the_longest_resource_id_prefix() {
    let policy = Policy {
        owners: BTreeMap::from([
            (
                "/subscriptions/S".to_string(),
                vec!["platform@contoso.com".to_string()],
            ),
            (
                "/subscriptions/s/resourceGroups/RG/".to_string(),
                vec!["team@contoso.com".to_string()],
            ),
        ]),
        notify_recipients: vec!["secops@contoso.com".into()],
        ..Policy::default()
    };
    let kv = AzureResourceId::parse(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
    )
    .ok();
    assert_eq!(
        policy.recipients_for(kv.as_ref()),
        vec!["team@contoso.com", "secops@contoso.com"]
    );
    let other = AzureResourceId::parse("/subscriptions/s/resourceGroups/rg2").ok();
    assert_eq!(
        policy.owners_of(other.as_ref()),
        vec!["platform@contoso.com"]
    );
    let none = AzureResourceId::parse("/subscriptions/s2").ok();
    assert!(policy.owners_of(none.as_ref()).is_empty());
}

#[test]
fn trusted_addresses_cover_ranges_and_optionally_private_space() {
    let policy = Policy {
        trusted_ip_ranges: vec!["203.0.113.0/24".parse().unwrap()],
        ..Policy::default()
    };
    assert!(policy.is_trusted_ip("203.0.113.45"));
    assert!(policy.is_trusted_ip("10.20.1.4"));
    assert!(!policy.is_trusted_ip("198.51.100.1"));
    assert!(!policy.is_trusted_ip("not an ip"));
    let strict = Policy {
        trust_private_addresses: false,
        ..policy
    };
    assert!(!strict.is_trusted_ip("10.20.1.4"));
}

#[test]
fn the_default_example_file_is_the_default_policy() {
    let from_file = parse_policy(include_str!("../../examples/policy/default.json")).unwrap();
    let defaults = Policy::default();
    assert_eq!(from_file.default_mode, defaults.default_mode);
    assert_eq!(from_file.max_rotation_tasks, defaults.max_rotation_tasks);
    assert_eq!(from_file.automation, builtin_rules());
    assert_eq!(
        Policy {
            automation: Vec::new(),
            ..from_file
        },
        defaults
    );
}

#[test]
fn policy_file_errors_name_every_bad_entry() {
    let text = r#"{
        "tenant_ids": ["not-a-guid"],
        "trusted_ip_ranges": ["10.0.0.0/8", "300.1.1.1/8"],
        "trusted_virtual_networks": ["vnet-hub"],
        "owners": {"rg-payments": ["a@contoso.com"]},
        "known_principals": [{"name": "no id"}, {"id": "A@contoso.com"}, {"id": "a@contoso.com"}],
        "automation": [
            {"action": "enable_key_vault_firewall", "mode": "auto", "min_severity": "High"},
            {"action": "rotate_everything", "mode": "auto"},
            {"step": "KV-9", "mode": "auto"},
            {"action": "contact_owner", "mode": "auto"},
            {"step": "KV-2a", "mode": "sometimes"},
            {"mode": "auto"},
            {"step": "KV-2a", "mode": "auto", "min_severity": "Critical-ish"}
        ],
        "default_mode": "yolo",
        "max_rotation_tasks": 0,
        "containment_expiry_hours": 0
    }"#;
    let err = parse_policy(text).unwrap_err();
    for expected in [
        "tenant_ids[0]: \"not-a-guid\"",
        "trusted_ip_ranges[1]: \"300.1.1.1/8\"",
        "trusted_virtual_networks[0]",
        "owners[\"rg-payments\"]",
        "known_principals[0].id: missing",
        "known_principals[2].id: \"a@contoso.com\" is already known_principals[1]",
        "automation[1].action: \"rotate_everything\" is not an action",
        "automation[2].step: \"KV-9\" is not a playbook step id",
        "automation[3].action: contact_owner is a notification",
        "automation[4].mode: \"sometimes\"",
        "automation[5]: names neither an action nor a step",
        "automation[6].min_severity: \"Critical-ish\"",
        "default_mode: \"yolo\"",
        "max_rotation_tasks: must be at least 1",
        "containment_expiry_hours: 0 must be a whole number of hours from 1 to 720",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    assert!(!err.contains("automation[0]"), "{err}");
}

#[test]
fn containment_expires_only_when_the_policy_says_after_how_long() {
    assert_eq!(Policy::default().containment_expiry(), None);
    let policy = parse_policy(r#"{"containment_expiry_hours": 24}"#).unwrap();
    assert_eq!(
        policy.containment_expiry(),
        Some(std::time::Duration::from_secs(24 * 3600))
    );
    let err = parse_policy(r#"{"containment_expiry_hours": 721}"#).unwrap_err();
    assert!(err.contains("containment_expiry_hours: 721"), "{err}");
}

#[test]
fn policy_file_rejects_unknown_fields_by_name() {
    let err = parse_policy(r#"{"trusted_ranges": []}"#).unwrap_err();
    assert!(err.contains("unknown field `trusted_ranges`"), "{err}");
    let err = parse_policy(
        r#"{"automation": [{"action": "reimage_vm", "mode": "auto", "severity": "High"}]}"#,
    )
    .unwrap_err();
    assert!(err.contains("unknown field `severity`"), "{err}");
}

#[test]
fn rule_steps_are_the_playbook_steps_and_their_headings() {
    for step in [
        "KV-1", "kv-2", "KV-2a", "KV-4", "DNS-2", "DNS-2d", "ARM-2", "arm-2c", "GEN-1",
    ] {
        let text = format!(r#"{{"automation": [{{"step": "{step}", "mode": "auto"}}]}}"#);
        assert!(parse_policy(&text).is_ok(), "{step}");
    }
    let policy = parse_policy(r#"{"automation": [{"step": "kv-2", "mode": "auto"}]}"#).unwrap();
    assert_eq!(policy.automation[0].step.as_deref(), Some("KV-2"));
    for step in ["KV-5", "KV-2z", "ARM", "DNS-3"] {
        let text = format!(r#"{{"automation": [{{"step": "{step}", "mode": "auto"}}]}}"#);
        let err = parse_policy(&text).unwrap_err();
        assert!(
            err.contains(&format!(
                "automation[0].step: {step:?} is not a playbook step id"
            )),
            "{err}"
        );
    }
}
