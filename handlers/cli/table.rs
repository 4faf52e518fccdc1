//! The human-readable (`--format table`) rendering of `plan`, `queues` and `undo`: each alert,
//! what it became, its tasks by queue with their step ids and reason, what waits for a
//! decision; and what an undo restored.

use std::fmt::Write as _;

use crate::domain::{Queue, Task, TaskStatus};
use crate::pipeline::{EventReport, Outcome};

use super::PlanOutput;

/// One queue of the embedded store as `queues` shows it.
pub(super) struct QueueView {
    /// The queue's configured name.
    pub(super) name: String,
    /// How many messages it holds.
    pub(super) count: u64,
    /// The first messages: the task when the body is one, else the subject and the raw body.
    pub(super) peek: Vec<Result<Task, (String, String)>>,
}

/// Columns to wrap reasons at: `COLUMNS` when set (shells export it to children), else 100.
pub(super) fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|columns| columns.trim().parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(60, 200)
}

/// `undo` as text: the change reverted, the writes sent, the state restored, the read-back,
/// and what could not be restored.
pub(super) fn undo_report(report: &crate::workers::undo::UndoReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "undone: {} ({} on {}) by {}",
        report.message_id, report.action, report.target, report.by
    );
    let _ = writeln!(out, "  reverted: {}", report.change);
    for sent in &report.sent {
        let _ = writeln!(
            out,
            "  wrote back: {} {} -> {}",
            sent.method, sent.url, sent.status
        );
    }
    let restored = serde_json::to_string(&report.prior_state).unwrap_or_default();
    let _ = writeln!(out, "  restored: {restored}");
    if let Some(verification) = &report.verification {
        let _ = writeln!(
            out,
            "  read back: {}",
            if verification.passed() {
                "matches the state before the change"
            } else {
                "differs (see below)"
            }
        );
    }
    if report.not_restored.is_empty() {
        let _ = writeln!(out, "  not restored: nothing");
    } else {
        for item in &report.not_restored {
            let _ = writeln!(out, "  not restored: {item}");
        }
    }
    out
}

/// `plan` as a table.
pub(super) fn plan(output: &PlanOutput, width: usize) -> String {
    let mut text = String::new();
    let mut waiting: Vec<&Task> = Vec::new();
    let mut outcomes: Vec<(Outcome, usize)> = Vec::new();
    let mut per_queue = [0usize; 3];
    let mut events = 0;
    for input in &output.inputs {
        let _ = writeln!(text, "{}", input.file);
        if let Some(error) = &input.error {
            let _ = writeln!(text, "  error: {error}");
        }
        if input.error.is_none() && input.events.is_empty() {
            let _ = writeln!(text, "  (no events)");
        }
        for event in &input.events {
            events += 1;
            match outcomes
                .iter_mut()
                .find(|(outcome, _)| *outcome == event.outcome)
            {
                Some((_, count)) => *count += 1,
                None => outcomes.push((event.outcome, 1)),
            }
            render_event(&mut text, event, width);
            for task in &event.tasks {
                per_queue[queue_index(task.queue)] += 1;
                if task.status == TaskStatus::PendingApproval {
                    waiting.push(task);
                }
            }
        }
        text.push('\n');
    }
    let outcome_list: Vec<String> = outcomes
        .iter()
        .map(|(outcome, count)| format!("{count} {}", outcome_name(*outcome)))
        .collect();
    let tasks: usize = per_queue.iter().sum();
    let _ = writeln!(
        text,
        "Summary: {events} event(s) in {} file(s): {}; {tasks} task(s): {}",
        output.inputs.len(),
        if outcome_list.is_empty() {
            "none".to_string()
        } else {
            outcome_list.join(", ")
        },
        Queue::ALL
            .iter()
            .map(|queue| format!("{} {}", queue.as_str(), per_queue[queue_index(*queue)]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    render_waiting(&mut text, &waiting, "Waiting for a decision");
    text
}

/// `queues` as a table.
pub(super) fn queues(store: &str, views: &[QueueView], width: usize) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "Embedded store {store}");
    let name_width = views
        .iter()
        .map(|view| view.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(text, "  {:<name_width$}  TASKS", "QUEUE");
    for view in views {
        let _ = writeln!(text, "  {:<name_width$}  {:>5}", view.name, view.count);
    }
    let mut waiting = Vec::new();
    for view in views.iter().filter(|view| !view.peek.is_empty()) {
        let _ = writeln!(
            text,
            "\n{}: the first {} of {}",
            view.name,
            view.peek.len(),
            view.count
        );
        let tasks: Vec<&Task> = view
            .peek
            .iter()
            .filter_map(|item| item.as_ref().ok())
            .collect();
        render_task_header(&mut text, &tasks, true);
        for item in &view.peek {
            match item {
                Ok(task) => {
                    render_task(&mut text, task, &tasks, true, width);
                    if task.status == TaskStatus::PendingApproval {
                        waiting.push(task);
                    }
                }
                Err((subject, body)) => {
                    let _ = writeln!(
                        text,
                        "    {subject}: not a task: {}",
                        clip(body, width - 20)
                    );
                }
            }
        }
    }
    if views.iter().any(|view| view.count > view.peek.len() as u64) {
        let _ = writeln!(text, "\n(--peek N shows more of each queue)");
    }
    if !waiting.is_empty() {
        text.push('\n');
        render_waiting(
            &mut text,
            &waiting,
            "Of the tasks shown, waiting for a decision",
        );
    }
    text
}

fn render_event(text: &mut String, event: &EventReport, width: usize) {
    let what = match &event.alert {
        Some(alert) => format!(
            "{}{} ({}, {}) -> {}",
            alert.alert_type,
            if alert.simulated { " [simulated]" } else { "" },
            alert.severity,
            alert.status,
            alert.service
        ),
        None => "no alert".to_string(),
    };
    let _ = writeln!(
        text,
        "  {} {what}",
        outcome_name(event.outcome).to_uppercase()
    );
    let _ = writeln!(text, "    event {}", event.event_id);
    wrap_into(text, "    ", &shorten_ids(&event.reason), width);
    for warning in &event.warnings {
        wrap_into(text, "    warning: ", warning, width);
    }
    if event.tasks.is_empty() {
        return;
    }
    let mut tasks: Vec<&Task> = event.tasks.iter().collect();
    tasks.sort_by_key(|task| queue_index(task.queue));
    render_task_header(text, &tasks, false);
    for task in &tasks {
        render_task(text, task, &tasks, false, width);
    }
}

fn render_task_header(text: &mut String, tasks: &[&Task], with_alert: bool) {
    if tasks.is_empty() {
        return;
    }
    let widths = Widths::of(tasks);
    let _ = write!(
        text,
        "    {:<q$}  {:<s$}  {:<a$}  {:<t$}  ",
        "QUEUE",
        "STEPS",
        "ACTION",
        "TARGET",
        q = widths.queue,
        s = widths.steps,
        a = widths.action,
        t = widths.target
    );
    if with_alert {
        let _ = write!(text, "{:<w$}  ", "ALERT", w = widths.alert);
    }
    text.push_str("STATUS\n");
}

fn render_task(text: &mut String, task: &Task, all: &[&Task], with_alert: bool, width: usize) {
    let widths = Widths::of(all);
    let _ = write!(
        text,
        "    {:<q$}  {:<s$}  {:<a$}  {:<t$}  ",
        task.queue.as_str(),
        task.steps.join(","),
        task.action.as_str(),
        short_target(&task.target),
        q = widths.queue,
        s = widths.steps,
        a = widths.action,
        t = widths.target
    );
    if with_alert {
        let _ = write!(text, "{:<w$}  ", task.alert.alert_type, w = widths.alert);
    }
    let _ = writeln!(text, "{}", status_name(task));
    wrap_into(text, "      why: ", &shorten_ids(&task.reason), width);
}

fn render_waiting(text: &mut String, waiting: &[&Task], heading: &str) {
    if waiting.is_empty() {
        let _ = writeln!(text, "Nothing waits for a decision.");
        return;
    }
    let _ = writeln!(
        text,
        "{heading} ({}): the worker holds each until the owner approves or rejects it",
        waiting.len()
    );
    for task in waiting {
        let _ = writeln!(
            text,
            "  {} {} on {} ({}, {})",
            task.steps.join(","),
            task.action.as_str(),
            short_target(&task.target),
            task.alert.alert_type,
            task.queue.as_str()
        );
    }
}

/// Column widths of a task table, so every row lines up.
struct Widths {
    queue: usize,
    steps: usize,
    action: usize,
    target: usize,
    alert: usize,
}

impl Widths {
    fn of(tasks: &[&Task]) -> Widths {
        let widest = |f: &dyn Fn(&Task) -> usize, header: &str| {
            tasks
                .iter()
                .map(|task| f(task))
                .max()
                .unwrap_or(0)
                .max(header.len())
        };
        Widths {
            queue: widest(&|task| task.queue.as_str().len(), "QUEUE"),
            steps: widest(&|task| task.steps.join(",").len(), "STEPS"),
            action: widest(&|task| task.action.as_str().len(), "ACTION"),
            target: widest(&|task| short_target(&task.target).chars().count(), "TARGET"),
            alert: widest(&|task| task.alert.alert_type.len(), "ALERT"),
        }
    }
}

fn queue_index(queue: Queue) -> usize {
    Queue::ALL.iter().position(|q| *q == queue).unwrap_or(0)
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Planned => "planned",
        Outcome::Duplicate => "duplicate",
        Outcome::StatusUpdate => "status update",
        Outcome::Ignored => "ignored",
        Outcome::Rejected => "rejected",
    }
}

fn status_name(task: &Task) -> &'static str {
    match (task.status, task.dry_run) {
        (TaskStatus::Ready, false) => "ready",
        (TaskStatus::Ready, true) => "ready (dry run)",
        (TaskStatus::PendingApproval, false) => "awaits decision",
        (TaskStatus::PendingApproval, true) => "awaits decision (dry run)",
    }
}

/// An Azure resource id as its last `type/name` pair (`vaults/kv-contoso`), a Key Vault URL
/// as `vault/secrets/name`; other targets (people, domains) clipped to 44 characters. The JSON
/// keeps the full target.
fn short_target(target: &str) -> String {
    if target.starts_with("/subscriptions/") || target.starts_with("/providers/") {
        let parts: Vec<&str> = target.trim_end_matches('/').rsplitn(3, '/').collect();
        if parts.len() >= 2 && !parts[1].is_empty() {
            return clip(&format!("{}/{}", parts[1], parts[0]), 60);
        }
    }
    let without_scheme = target.strip_prefix("https://").unwrap_or(target);
    clip(&without_scheme.replacen(".vault.azure.net", "", 1), 44)
}

/// The reason with every Azure resource id in it shortened as in the target column, so the
/// words around the ids stay readable.
fn shorten_ids(reason: &str) -> String {
    reason
        .split(' ')
        .map(|word| match word.find("/subscriptions/") {
            Some(start) => {
                let id_end = word[start..]
                    .find([';', ',', ')', '\'', '"'])
                    .map_or(word.len(), |end| start + end);
                let id_end = if word[..id_end].ends_with('.') {
                    id_end - 1
                } else {
                    id_end
                };
                format!(
                    "{}{}{}",
                    &word[..start],
                    short_target(&word[start..id_end]),
                    &word[id_end..]
                )
            }
            None => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(3)).collect();
    clipped.push_str("...");
    clipped
}

/// Appends `body` after `prefix`, wrapped at word boundaries to `width` columns, with the
/// continuation lines indented under the body.
fn wrap_into(text: &mut String, prefix: &str, body: &str, width: usize) {
    let indent = " ".repeat(prefix.chars().count());
    let room = width.saturating_sub(indent.len()).max(20);
    let mut line = String::new();
    let mut first = true;
    for word in body.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > room {
            let _ = writeln!(text, "{}{line}", if first { prefix } else { &indent });
            first = false;
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || first {
        let _ = writeln!(text, "{}{line}", if first { prefix } else { &indent });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_show_their_type_and_name() {
        assert_eq!(
            short_target(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-a"
            ),
            "vaults/kv-a"
        );
        assert_eq!(short_target("alice@contoso.com"), "alice@contoso.com");
        assert_eq!(
            short_target("https://kv-a.vault.azure.net/secrets/db"),
            "kv-a/secrets/db"
        );
        assert_eq!(short_target(&"x".repeat(60)).len(), 44);
    }

    #[test]
    fn ids_in_reasons_are_shortened_and_their_punctuation_kept() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-a";
        assert_eq!(
            shorten_ids(&format!("firewall of {id}; then ({id}). Done {id}.")),
            "firewall of vaults/kv-a; then (vaults/kv-a). Done vaults/kv-a."
        );
    }

    #[test]
    fn reasons_wrap_at_words_under_their_prefix() {
        let mut text = String::new();
        wrap_into(&mut text, "  why: ", &"word ".repeat(30), 40);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 3, "{text}");
        assert!(lines[0].starts_with("  why: word"));
        assert!(lines[1].starts_with("       word"));
        assert!(lines.iter().all(|line| line.len() <= 40), "{text}");
    }
}
