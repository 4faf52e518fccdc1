//! Decision timeouts in the policy: the file's `decisions` and rule `on_timeout`, validated at
//! start-up with errors naming the entry, and the rule that decides for a task.

use super::timeouts::{OnTimeout, NEVER_PROCEED};
use super::*;
use crate::domain::AlertRef;
use crate::services::Registry;

fn parse(text: &str) -> Result<Policy, String> {
    file::parse_policy(text, &Registry::standard().steps())
}

fn pending(action: Action) -> Task {
    let mut task = Task::example(
        &AlertRef::sample("sys-1"),
        action,
        &["KV-2a"],
        "kv-a",
        "vault accessed from an unusual address",
    );
    task.status = TaskStatus::PendingApproval;
    task.policy = Some(PolicyDecision {
        mode: "approval".into(),
        rule: "automation[0]".into(),
        loop_protection: false,
    });
    task
}

#[test]
fn by_default_a_timeout_expires() {
    let decision = Policy::default().on_timeout_for(&pending(Action::EnableKeyVaultFirewall));
    assert_eq!(decision.on_timeout, OnTimeout::Expire);
    assert_eq!(decision.rule, "decisions");
}

#[test]
fn the_covering_rule_decides_and_falls_back_to_decisions() {
    let policy = parse(
        r#"{
          "decisions": {"on_timeout": "escalate", "escalate_to": ["lead@contoso.com"]},
          "automation": [
            {"action": "enable_key_vault_firewall", "mode": "approval", "on_timeout": "proceed"},
            {"action": "rotate_secret", "mode": "approval", "on_timeout": "escalate", "escalate_to": ["vault-owners@contoso.com"]},
            {"action": "restrict_principal", "mode": "approval"}
          ]
        }"#,
    )
    .unwrap();
    let firewall = policy.on_timeout_for(&pending(Action::EnableKeyVaultFirewall));
    assert_eq!(
        (firewall.on_timeout, firewall.rule.as_str()),
        (OnTimeout::Proceed, "automation[0]")
    );
    let rotation = policy.on_timeout_for(&pending(Action::RotateSecret));
    assert_eq!(rotation.on_timeout, OnTimeout::Escalate);
    assert_eq!(rotation.escalate_to, ["vault-owners@contoso.com"]);
    // A rule without on_timeout: the policy's decisions.
    let restrict = policy.on_timeout_for(&pending(Action::RestrictPrincipal));
    assert_eq!(restrict.on_timeout, OnTimeout::Escalate);
    assert_eq!(restrict.escalate_to, ["lead@contoso.com"]);
    assert_eq!(restrict.rule, "decisions");
}

#[test]
fn proceed_never_applies_under_loop_protection() {
    let policy = parse(
        r#"{"automation": [{"action": "enable_key_vault_firewall", "mode": "approval", "on_timeout": "proceed"}]}"#,
    )
    .unwrap();
    let mut task = pending(Action::EnableKeyVaultFirewall);
    task.policy.as_mut().unwrap().loop_protection = true;
    let decision = policy.on_timeout_for(&task);
    assert_eq!(decision.on_timeout, OnTimeout::Expire);
    assert!(decision.rule.contains("own identity"), "{}", decision.rule);
}

#[test]
fn proceed_named_by_a_step_rule_still_never_applies_to_an_irreversible_action() {
    let policy =
        parse(r#"{"automation": [{"step": "KV-4", "mode": "approval", "on_timeout": "proceed"}]}"#)
            .unwrap();
    let mut task = pending(Action::DisableSecret);
    task.steps = vec!["KV-4a".into()];
    let decision = policy.on_timeout_for(&task);
    assert_eq!(decision.on_timeout, OnTimeout::Expire);
    assert!(
        decision.rule.contains("never carried out"),
        "{}",
        decision.rule
    );
    assert!(NEVER_PROCEED.contains(&Action::DisableSecret));
}

#[test]
fn bad_timeout_settings_stop_the_start_naming_the_entry() {
    for (text, expected) in [
        (
            r#"{"decisions": {"on_timeout": "proceed"}}"#,
            "decisions.on_timeout: proceed is allowed only on an automation rule",
        ),
        (
            r#"{"decisions": {"on_timeout": "wait"}}"#,
            r#"decisions.on_timeout: "wait" is not expire or escalate"#,
        ),
        (
            r#"{"decisions": {"on_timeout": "escalate"}}"#,
            "decisions.escalate_to: escalate needs someone to ask",
        ),
        (
            r#"{"automation": [{"action": "rotate_secret", "mode": "approval", "on_timeout": "later"}]}"#,
            r#"automation[0].on_timeout: "later" is not expire, escalate or proceed"#,
        ),
        (
            r#"{"automation": [{"action": "rotate_secret", "mode": "approval", "on_timeout": "escalate"}]}"#,
            "automation[0].escalate_to: escalate needs someone to ask",
        ),
        (
            r#"{"automation": [{"action": "rotate_secret", "mode": "auto", "on_timeout": "proceed"}]}"#,
            "automation[0].on_timeout: the rule's tasks never wait for a decision (mode auto without min_severity)",
        ),
        (
            r#"{"automation": [{"action": "rotate_secret", "mode": "notify_only", "on_timeout": "expire"}]}"#,
            "automation[0].on_timeout: the rule's tasks never wait for a decision (mode notify_only)",
        ),
        (
            r#"{"automation": [{"action": "reimage_vm", "mode": "approval", "on_timeout": "proceed"}]}"#,
            "automation[0].on_timeout: reimage_vm cannot be undone",
        ),
        (
            r#"{"automation": [{"action": "rotate_secret", "mode": "approval", "escalate_to": ["a@contoso.com"]}]}"#,
            "automation[0].escalate_to: only used with on_timeout escalate",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(expected), "{text}: {err}");
    }
    // Auto above a threshold waits below it: a timeout applies there.
    parse(r#"{"automation": [{"action": "rotate_secret", "mode": "auto", "min_severity": "High", "on_timeout": "proceed"}]}"#)
        .unwrap();
}
