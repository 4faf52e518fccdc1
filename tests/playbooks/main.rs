//! The plans of every fixture under the default, strict and permissive policies, as compact
//! snapshots (one line per task: queue, action, target, steps, status), the recorded message
//! ids, and the task contract's schema.
//!
//! Review changes with `INSTA_UPDATE=always INSTA_FORCE_PASS=1 cargo test --test playbooks`
//! and `git diff tests/playbooks/snapshots`; CI runs with `INSTA_UPDATE=no`.

mod message_ids;
mod schema;
mod support;

use std::fmt::Write as _;

use defender_responder::domain::TaskStatus;
use defender_responder::pipeline::EventReport;

/// One line per task: what a reviewer needs to see a plan change.
fn projection(reports: &[EventReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let alert = match &report.alert {
            Some(alert) => format!(" {} {}", alert.service, alert.alert_type),
            None => String::new(),
        };
        let _ = writeln!(out, "  event {:?}{alert}", report.outcome);
        for warning in &report.warnings {
            let short: String = warning.chars().take(160).collect();
            let _ = writeln!(out, "    warning: {short}");
        }
        for task in &report.tasks {
            let status = match (task.status, task.dry_run) {
                (TaskStatus::Ready, false) => "ready",
                (TaskStatus::Ready, true) => "ready dry-run",
                (TaskStatus::PendingApproval, false) => "pending",
                (TaskStatus::PendingApproval, true) => "pending dry-run",
            };
            let _ = writeln!(
                out,
                "    {:<12} {:<29} {} [{}] {status}",
                task.queue.as_str(),
                task.action.as_str(),
                task.target,
                task.steps.join(",")
            );
        }
    }
    out
}

fn snapshot_corpora(policy_name: &str) {
    let (_, policy) = support::policies()
        .into_iter()
        .find(|(name, _)| *name == policy_name)
        .expect("policy");
    let mut text = String::new();
    for (corpus, fixture, reports) in support::plan_all_corpora(&policy) {
        let _ = writeln!(text, "{corpus}/{fixture}");
        if reports.is_empty() {
            let _ = writeln!(text, "  (body rejected, as EXPECTED.json says)");
        }
        text.push_str(&projection(&reports));
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(format!("plans_{policy_name}"), text));
}

#[test]
fn plans_under_the_default_policy() {
    snapshot_corpora("default");
}

#[test]
fn plans_under_the_strict_policy() {
    snapshot_corpora("strict");
}

#[test]
fn plans_under_the_permissive_policy() {
    snapshot_corpora("permissive");
}
