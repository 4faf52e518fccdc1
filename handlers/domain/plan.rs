//! A response plan: the tasks one alert calls for, merged so no action is planned twice.

use serde::Serialize;

use super::task::Task;

/// The tasks planned for one alert, in the order they should be carried out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ResponsePlan {
    tasks: Vec<Task>,
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
                if !existing.reason.contains(&task.reason) {
                    existing.reason = format!("{} {}", existing.reason, task.reason);
                }
            }
            None => self.tasks.push(task),
        }
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

    /// Whether nothing was planned.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
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
        plan.push(Task::new(
            &alert,
            Action::ContactOwner,
            &["KV-1"],
            "kv",
            "Owner of kv.",
        ));
        plan.push(Task::new(
            &alert,
            Action::ContactOwner,
            &["KV-3"],
            "kv",
            "Impact.",
        ));
        plan.push(Task::new(
            &alert,
            Action::RotateSecret,
            &["KV-4a"],
            "kv/s",
            "Read.",
        ));
        assert_eq!(plan.tasks().len(), 2);
        assert_eq!(plan.tasks()[0].steps, vec!["KV-1", "KV-3"]);
        assert_eq!(plan.tasks()[0].reason, "Owner of kv. Impact.");
    }
}
