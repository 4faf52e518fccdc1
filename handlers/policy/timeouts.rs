//! What happens when a decision does not come in time: expire (the default), escalate to
//! named people once, or proceed (only where an automation rule says so), and which rule of
//! the policy decides it for a task.

use std::fmt;

use serde::Serialize;

use super::{Mode, Policy};
use crate::domain::{Action, Task};

/// The action of a decision timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// The task expires: nothing is changed, the recipients are told.
    #[default]
    Expire,
    /// The decision is asked again of the escalation recipients (fresh links), once; after
    /// another timeout the task expires.
    Escalate,
    /// The task is carried out as approved by `timeout`. Only on an automation rule, never
    /// for the actions in [`NEVER_PROCEED`], never for a task under loop protection.
    Proceed,
}

impl OnTimeout {
    /// Parses `expire`, `escalate` or `proceed`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "expire" => Some(OnTimeout::Expire),
            "escalate" => Some(OnTimeout::Escalate),
            "proceed" => Some(OnTimeout::Proceed),
            _ => None,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Expire => "expire",
            OnTimeout::Escalate => "escalate",
            OnTimeout::Proceed => "proceed",
        }
    }
}

impl fmt::Display for OnTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Actions a timeout never carries out, whatever a rule says: they cannot be undone.
pub const NEVER_PROCEED: [Action; 3] = [
    Action::ReimageVm,
    Action::DeleteUnfamiliarAccount,
    Action::DisableSecret,
];

/// A timeout rule: what to do, and whom to escalate to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TimeoutRule {
    /// What happens.
    pub on_timeout: OnTimeout,
    /// Who is asked again on `escalate` (empty: the policy's `decisions.escalate_to`).
    pub escalate_to: Vec<String>,
}

/// What a timeout does to one task, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TimeoutDecision {
    /// What happens.
    pub on_timeout: OnTimeout,
    /// Who is asked again (for `escalate`; never empty then).
    pub escalate_to: Vec<String>,
    /// The rule that decided (`automation[2]`, `decisions`), or why `proceed` was refused.
    pub rule: String,
}

impl Policy {
    /// What a decision timeout does to `task`: the first automation rule that covers it (the
    /// one that gave it its mode) when that rule names `on_timeout`, else `decisions`. A
    /// `proceed` the task may not have (an action in [`NEVER_PROCEED`], loop protection, or
    /// a task this rule did not make wait) becomes `expire`, saying why.
    pub fn on_timeout_for(&self, task: &Task) -> TimeoutDecision {
        let covering = self
            .automation
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.covers(task));
        let (rule, name) = match covering {
            Some((index, rule)) if rule.on_timeout.is_some() => (
                rule.on_timeout.clone().unwrap_or_default(),
                format!("automation[{index}]"),
            ),
            _ => (self.on_timeout.clone(), "decisions".to_string()),
        };
        let escalate_to = if rule.escalate_to.is_empty() {
            self.on_timeout.escalate_to.clone()
        } else {
            rule.escalate_to.clone()
        };
        let loop_protected = task.policy.as_ref().is_some_and(|p| p.loop_protection);
        let refused = match rule.on_timeout {
            OnTimeout::Proceed if NEVER_PROCEED.contains(&task.action) => Some(format!(
                "{name} says proceed, but {} is never carried out without a decision",
                task.action
            )),
            OnTimeout::Proceed if loop_protected => Some(format!(
                "{name} says proceed, but the responder's own identity caused the alert"
            )),
            OnTimeout::Escalate if escalate_to.is_empty() => {
                Some(format!("{name} says escalate, but names no one"))
            }
            _ => None,
        };
        match refused {
            Some(why) => TimeoutDecision {
                on_timeout: OnTimeout::Expire,
                escalate_to: Vec::new(),
                rule: why,
            },
            None => TimeoutDecision {
                on_timeout: rule.on_timeout,
                escalate_to,
                rule: name,
            },
        }
    }
}

/// Checks an automation rule's `on_timeout` against its mode and action: an error message
/// (without the rule's position) when the combination cannot be right.
pub(super) fn check_rule(
    on_timeout: &TimeoutRule,
    mode: Mode,
    has_threshold: bool,
    action: Option<Action>,
    default_escalate_to: &[String],
) -> Result<(), String> {
    let waits = mode == Mode::Approval || (mode == Mode::Auto && has_threshold);
    if !waits {
        return Err(format!(
            ".on_timeout: the rule's tasks never wait for a decision (mode {mode}{}), so there is no timeout",
            if mode == Mode::Auto { " without min_severity" } else { "" }
        ));
    }
    if let Some(action) = action.filter(|a| NEVER_PROCEED.contains(a)) {
        if on_timeout.on_timeout == OnTimeout::Proceed {
            return Err(format!(
                ".on_timeout: {action} cannot be undone and is never carried out without a decision"
            ));
        }
    }
    if on_timeout.on_timeout == OnTimeout::Escalate
        && on_timeout.escalate_to.is_empty()
        && default_escalate_to.is_empty()
    {
        return Err(
            ".escalate_to: escalate needs someone to ask (here or in decisions.escalate_to)"
                .to_string(),
        );
    }
    if on_timeout.on_timeout != OnTimeout::Escalate && !on_timeout.escalate_to.is_empty() {
        return Err(format!(
            ".escalate_to: only used with on_timeout escalate, not {}",
            on_timeout.on_timeout
        ));
    }
    Ok(())
}
