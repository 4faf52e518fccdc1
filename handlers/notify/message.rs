//! The notification a person reads: one per alert and destination, built from that alert's
//! notification tasks and what the journal knows of its other tasks (pending with decision
//! links, done with how to undo). Pure: the channels render it (`teams`, `slack`, `email`).

use std::collections::BTreeMap;

use serde::Serialize;
use url::Url;

use crate::domain::{Action, AlertRef, MessageId, Queue, Task, TaskStatus};
use crate::journal::{JournalEntry, RawJson, TaskState, Verdict};

/// What a notification says about one of the alert's notification tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Section {
    /// The task's message id.
    pub message_id: MessageId,
    /// Its action (`contact_owner`, `notify_security_team`, …).
    pub action: Action,
    /// The playbook steps.
    pub steps: Vec<String>,
    /// Why, as the planner wrote it.
    pub reason: String,
    /// Facts for the reader.
    pub facts: BTreeMap<String, String>,
}

/// A containment task waiting for a decision, with its links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingDecision {
    /// The waiting task's message id.
    pub message_id: MessageId,
    /// What it would do.
    pub action: String,
    /// On what (empty when unknown).
    pub target: String,
    /// The playbook steps.
    pub steps: Vec<String>,
    /// Why.
    pub reason: String,
    /// The signed Approve link (none while the task has no recorded change to bind it to).
    pub approve: Option<Url>,
    /// The signed Reject link.
    pub reject: Option<Url>,
}

/// A change the responder made for the alert, and how to take it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DoneChange {
    /// The task's message id.
    pub message_id: MessageId,
    /// What was done.
    pub action: String,
    /// The playbook steps.
    pub steps: Vec<String>,
    /// A short account of the result.
    pub summary: String,
    /// How to undo it, as the executor recorded it (`result.undo`); none when it did not say.
    pub undo: Option<String>,
    /// Whether it was a dry run (nothing changed).
    pub dry_run: bool,
}

/// Another task of the same alert, as the notification describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelatedTask {
    /// Its message id.
    pub message_id: MessageId,
    /// Its queue.
    pub queue: Queue,
    /// Its action.
    pub action: Action,
    /// Its target as text (empty when unknown).
    pub target: String,
    /// Its steps.
    pub steps: Vec<String>,
    /// Why.
    pub reason: String,
    /// Where it stands.
    pub state: RelatedState,
}

/// Where a related task stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelatedState {
    /// Waiting for a decision; the links when the desk could sign them.
    Pending(Vec<(Verdict, Url)>),
    /// Carried out (or previewed, for a dry run).
    Done {
        /// A short account of the result.
        summary: String,
        /// How to undo it.
        undo: Option<String>,
        /// Whether it was a dry run.
        dry_run: bool,
    },
    /// Anything else (received, running, failed, …): named in the journal, not in the message.
    Other,
}

impl RelatedTask {
    /// A planned task not yet in the journal: pending when published so.
    pub fn from_task(task: &Task) -> Self {
        RelatedTask {
            message_id: task.message_id.clone(),
            queue: task.queue,
            action: task.action,
            target: task.target.clone(),
            steps: task.steps.clone(),
            reason: task.reason.clone(),
            state: if task.status == TaskStatus::PendingApproval {
                RelatedState::Pending(Vec::new())
            } else {
                RelatedState::Other
            },
        }
    }

    /// A task as the journal records it; `links` are its decision links when pending.
    pub fn from_entry(entry: &JournalEntry, links: Vec<(Verdict, Url)>) -> Self {
        let state = match entry.state {
            TaskState::PendingApproval => RelatedState::Pending(links),
            TaskState::Done => {
                let result = entry.result.as_ref().map(RawJson::to_value);
                let result = result.as_ref();
                let text = |key: &str| {
                    result
                        .and_then(|r| r.get(key))
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                RelatedState::Done {
                    summary: text("summary").unwrap_or_else(|| "done and verified".to_string()),
                    undo: text("undo"),
                    dry_run: entry.dry_run,
                }
            }
            _ => RelatedState::Other,
        };
        RelatedTask {
            message_id: entry.message_id.clone(),
            queue: entry.queue,
            action: entry.action,
            target: String::new(),
            steps: entry.steps.clone(),
            reason: entry.reason.clone(),
            state,
        }
    }
}

/// One message for one destination about one alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Deterministic: the alert, the channel, the destination and the tasks covered; the
    /// idempotency key of the delivery (`webhook-id`, `X-DR-Message-Id`).
    pub message_id: MessageId,
    /// The alert.
    pub alert: AlertRef,
    /// One line: severity, alert type, resource name.
    pub title: String,
    /// Who it is for (the addresses the routing sent here).
    pub recipients: Vec<String>,
    /// Whether every covered task is a dry run.
    pub dry_run: bool,
    /// One per notification task covered, in plan order.
    pub sections: Vec<Section>,
    /// The manual steps of every covered task, without repeats, in order.
    pub checklist: Vec<String>,
    /// Tasks waiting for a decision.
    pub pending: Vec<PendingDecision>,
    /// Changes made, with how to undo them.
    pub done: Vec<DoneChange>,
    /// The alert in the Defender portal.
    pub portal_url: Option<String>,
    /// The alert's full journal entry.
    pub journal_url: Option<Url>,
}

/// What the builder needs besides the tasks.
#[derive(Clone, Debug, Default)]
pub struct BuildContext {
    /// The alert's other tasks (containment and earlier notifications).
    pub related: Vec<RelatedTask>,
    /// The base of journal links: `{base}?alert={systemAlertId}` is the alert's journal.
    pub journal_base: Option<Url>,
}

impl Notification {
    /// The message for `recipients` on `channel`, covering `tasks` (the alert's notification
    /// tasks routed there; at least one, all of one alert).
    pub fn build(
        tasks: &[&Task],
        recipients: Vec<String>,
        channel: &str,
        destination: &str,
        context: &BuildContext,
    ) -> Option<Notification> {
        let first = tasks.first()?;
        let alert = first.alert.clone();
        let mut ids: Vec<&str> = tasks.iter().map(|t| t.message_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        // A fixed action: the id must not depend on the order the tasks arrived in.
        let message_id = MessageId::derive(
            &alert.system_alert_id,
            Action::NotifySecurityTeam,
            &format!(
                "message\u{1f}{channel}\u{1f}{destination}\u{1f}{}",
                ids.join(",")
            ),
        );
        let mut checklist: Vec<String> = Vec::new();
        for item in tasks.iter().flat_map(|t| &t.checklist) {
            if !checklist.contains(item) {
                checklist.push(item.clone());
            }
        }
        let sections = tasks
            .iter()
            .map(|t| Section {
                message_id: t.message_id.clone(),
                action: t.action,
                steps: t.steps.clone(),
                reason: t.reason.clone(),
                facts: t.facts.clone(),
            })
            .collect();
        let mut pending = Vec::new();
        let mut done = Vec::new();
        for related in &context.related {
            if related.queue == Queue::Notification {
                continue;
            }
            match &related.state {
                RelatedState::Pending(links) => {
                    let link = |verdict: Verdict| {
                        links
                            .iter()
                            .find(|(v, _)| *v == verdict)
                            .map(|(_, url)| url.clone())
                    };
                    pending.push(PendingDecision {
                        message_id: related.message_id.clone(),
                        action: related.action.as_str().to_string(),
                        target: related.target.clone(),
                        steps: related.steps.clone(),
                        reason: related.reason.clone(),
                        approve: link(Verdict::Approve),
                        reject: link(Verdict::Reject),
                    })
                }
                RelatedState::Done {
                    summary,
                    undo,
                    dry_run,
                } => done.push(DoneChange {
                    message_id: related.message_id.clone(),
                    action: related.action.as_str().to_string(),
                    steps: related.steps.clone(),
                    summary: summary.clone(),
                    undo: undo.clone(),
                    dry_run: *dry_run,
                }),
                RelatedState::Other => {}
            }
        }
        let journal_url = context.journal_base.as_ref().map(|base| {
            let mut url = base.clone();
            url.query_pairs_mut()
                .append_pair("alert", &alert.system_alert_id);
            url
        });
        Some(Notification {
            message_id,
            title: title(&alert),
            recipients,
            dry_run: tasks.iter().all(|t| t.dry_run),
            sections,
            checklist,
            pending,
            done,
            portal_url: alert.alert_uri.clone(),
            journal_url,
            alert,
        })
    }

    /// The resource's short name (the last segment of its id).
    pub fn resource_name(&self) -> &str {
        resource_name(&self.alert.resource)
    }
}

/// `Medium · KV_SuspiciousIPAccess · kv-contoso-payments`.
pub fn title(alert: &AlertRef) -> String {
    let severity = serde_json::to_value(alert.severity)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let name = resource_name(&alert.resource);
    if name.is_empty() {
        format!("{severity} · {}", alert.alert_type)
    } else {
        format!("{severity} · {} · {name}", alert.alert_type)
    }
}

fn resource_name(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// A human name for an action: `enable_key_vault_firewall` → `Enable key vault firewall`.
pub fn action_label(action: &str) -> String {
    let words = action.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A fact's key as a label: `caller_ips` → `Caller ips`.
pub fn fact_label(key: &str) -> String {
    action_label(key)
}

/// Cuts `text` to at most `max` characters, ending with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
