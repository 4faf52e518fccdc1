//! A response plan: the tasks one alert calls for, merged so no action is planned twice.

use serde::Serialize;

use super::task::{Action, Task};

/// Containment the playbook calls for but the alert names no exact target for: it cannot
/// be a task, so it becomes a checklist item (and its steps) on the plan's first notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualItem {
    /// The playbook steps.
    pub steps: Vec<String>,
    /// The action that could not be planned.
    pub action: Action,
    /// Why it was called for, and what the alert lacks.
    pub reason: String,
}

/// The tasks planned for one alert, in the order they should be carried out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ResponsePlan {
    tasks: Vec<Task>,
    #[serde(skip)]
    manual: Vec<ManualItem>,
    #[serde(skip)]
    warnings: Vec<String>,
}

impl ResponsePlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task; a task with the same message id (same action and target) is merged into
    /// the existing one (steps, facts, checklist and recipients joined) instead of repeated.
    pub fn push(&mut self, task: Task) {
        match self
            .tasks
            .iter_mut()
            .find(|existing| existing.message_id == task.message_id)
        {
            Some(existing) => {
                for step in task.steps {
                    if !existing.steps.contains(&step) {
                        existing.steps.push(step);
                    }
                }
                for item in task.checklist {
                    if !existing.checklist.contains(&item) {
                        existing.checklist.push(item);
                    }
                }
                for person in task.recipients {
                    if !existing.recipients.contains(&person) {
                        existing.recipients.push(person);
                    }
                }
                for (name, value) in task.facts {
                    existing.facts.entry(name).or_insert(value);
                }
                existing.parameters.absorb(task.parameters);
                if !existing.reason.contains(&task.reason) {
                    existing.reason = format!("{} {}", existing.reason, task.reason);
                }
            }
            None => self.tasks.push(task),
        }
    }

    /// Records containment that has no exact target in the alert (see [`ManualItem`]).
    pub fn push_manual(&mut self, steps: &[&str], action: Action, reason: impl Into<String>) {
        self.manual.push(ManualItem {
            steps: steps.iter().map(|step| step.to_string()).collect(),
            action,
            reason: reason.into(),
        });
    }

    /// Turns the containment without a target into checklist items of the first
    /// notification, so nothing is dropped. Returns how many there were.
    pub fn attach_manual_items(&mut self) -> usize {
        let manual = std::mem::take(&mut self.manual);
        let count = manual.len();
        if let Some(note) = self
            .tasks
            .iter_mut()
            .find(|task| !task.queue.is_containment())
        {
            for item in manual {
                for step in &item.steps {
                    if !note.steps.contains(step) {
                        note.steps.push(step.clone());
                    }
                }
                note.checklist.push(format!(
                    "{}: the alert names no target for {}, so it is not planned as a task; do it by hand if needed: {}",
                    item.steps.join(", "),
                    item.action,
                    item.reason
                ));
            }
        }
        count
    }

    /// Records a survivable problem found while planning (named like decoding warnings).
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// The problems found while planning.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Takes over another plan's manual items and warnings (its tasks are dropped).
    pub fn absorb_notes(&mut self, other: ResponsePlan) {
        self.manual.extend(other.manual);
        self.warnings.extend(other.warnings);
    }

    /// The tasks.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// The tasks, for policy to adjust.
    pub fn tasks_mut(&mut self) -> &mut [Task] {
        &mut self.tasks
    }

    /// Takes the tasks out.
    pub fn into_tasks(self) -> Vec<Task> {
        self.tasks
    }

    /// Takes the tasks out, keeping the manual items and warnings (for the policy to
    /// rebuild the plan).
    pub fn take_tasks(&mut self) -> Vec<Task> {
        std::mem::take(&mut self.tasks)
    }

    /// Whether nothing was planned.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Whether no task and no manual item was planned.
    pub fn has_nothing(&self) -> bool {
        self.tasks.is_empty() && self.manual.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::{Action, AlertRef};

    fn alert_ref() -> AlertRef {
        AlertRef::sample("sys")
    }

    #[test]
    fn the_same_action_on_the_same_target_is_merged_not_repeated() {
        let alert = alert_ref();
        let mut plan = ResponsePlan::new();
        plan.push(Task::notice(&alert, "kv", "Owner of kv."));
        plan.push(Task::notice(&alert, "kv", "Impact.").checklist(["x"]));
        plan.push(Task::notice(&alert, "other", "Other."));
        assert_eq!(plan.tasks().len(), 2);
        assert_eq!(plan.tasks()[0].reason, "Owner of kv. Impact.");
        assert_eq!(plan.tasks()[0].checklist, vec!["x"]);
    }

    #[test]
    fn containment_without_a_target_becomes_a_checklist_item() {
        let alert = alert_ref();
        let mut plan = ResponsePlan::new();
        plan.push(Task::notice(&alert, "kv", "Owner of kv."));
        plan.push_manual(
            &["KV-2a"],
            Action::EnableKeyVaultFirewall,
            "the vault has no id",
        );
        assert!(!plan.is_empty());
        assert_eq!(plan.attach_manual_items(), 1);
        let note = &plan.tasks()[0];
        assert!(note.steps.contains(&"KV-2a".to_string()));
        assert!(note.checklist[0].contains("enable_key_vault_firewall"));
    }
}
