//! Per-service handlers (alert in, plan out) and the registry that routes alerts to them.

mod dns;
mod facts;
mod fallback;
mod key_vault;
mod resource_manager;

use crate::domain::catalog::{self, CatalogEntry};
use crate::domain::{AlertRef, AzureResourceId, ResponsePlan, SecurityAlert, Service, Task};
use crate::policy::Policy;

pub use dns::Dns;
pub use fallback::Fallback;
pub use key_vault::KeyVault;
pub use resource_manager::ResourceManager;

/// Everything a handler may read to plan: the alert, what the catalogue says of its type,
/// and the policy. Handlers are pure: no I/O, so plans are tested without a network.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// The alert.
    pub alert: &'a SecurityAlert,
    /// The catalogue entry of its type (`None` for undocumented types).
    pub entry: Option<&'static CatalogEntry>,
    /// The policy.
    pub policy: &'a Policy,
    /// The summary every task carries.
    pub alert_ref: &'a AlertRef,
}

/// Turns an alert of one Defender plan into a response plan.
pub trait ServiceHandler: Send + Sync {
    /// The service this handler owns.
    fn service(&self) -> Service;
    /// Builds the plan. Pure and deterministic.
    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan;
}

/// The per-service handlers, looked up by the service the catalogue gives an alert type.
pub struct Registry {
    handlers: Vec<Box<dyn ServiceHandler>>,
    fallback: Fallback,
}

impl Registry {
    /// An empty registry (undocumented and unregistered types still get the fallback plan).
    pub fn empty() -> Self {
        Registry {
            handlers: Vec::new(),
            fallback: Fallback,
        }
    }

    /// Adds a handler. One line per service in [`Registry::standard`].
    pub fn register(mut self, handler: impl ServiceHandler + 'static) -> Self {
        self.handlers.push(Box::new(handler));
        self
    }

    /// The standard handlers.
    pub fn standard() -> Self {
        Self::empty()
            .register(KeyVault)
            .register(Dns)
            .register(ResourceManager)
    }

    /// The service an alert routes to, from the catalogue (simulator prefix removed).
    pub fn route(&self, alert: &SecurityAlert) -> (Service, Option<&'static CatalogEntry>) {
        match catalog::lookup(alert.base_alert_type()) {
            Some(entry) if self.handlers.iter().any(|h| h.service() == entry.service) => {
                (entry.service, Some(entry))
            }
            Some(entry) => (Service::Unknown, Some(entry)),
            None => (Service::Unknown, None),
        }
    }

    /// Plans the response to an alert and applies the policy's global safety rules.
    pub fn plan(&self, alert: &SecurityAlert, policy: &Policy) -> (Service, ResponsePlan) {
        let (service, entry) = self.route(alert);
        let alert_ref = AlertRef::new(alert, service);
        let input = PlanInput {
            alert,
            entry,
            policy,
            alert_ref: &alert_ref,
        };
        let handler: &dyn ServiceHandler = self
            .handlers
            .iter()
            .find(|handler| handler.service() == service)
            .map(|handler| handler.as_ref())
            .unwrap_or(&self.fallback);
        let mut plan = without_unnamed_targets(handler.plan(&input));
        if plan.is_empty() {
            // Nothing is ever dropped silently: a handler that found nothing to do still tells
            // the security team.
            plan = self.fallback.plan(&input);
        }
        policy.finalize(alert, &mut plan);
        (service, plan)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::standard()
    }
}

/// The people to notify about a resource: its owner (when the policy can name one) and the
/// security team.
pub(crate) fn notify_targets(policy: &Policy, resource: Option<&AzureResourceId>) -> Vec<String> {
    policy.recipients_for(resource)
}

/// Whether a task target names something a worker can act on (a resource id, a vault object
/// URI, an object id, a UPN or a resource name) rather than a placeholder sentence.
fn is_actionable_target(target: &str) -> bool {
    let target = target.trim();
    !target.is_empty() && !target.contains(char::is_whitespace) && !target.contains('(')
}

/// Containment the alert gives no target for cannot be carried out: each such task becomes a
/// checklist item (and its steps) on the plan's first notification, so nothing is dropped.
fn without_unnamed_targets(plan: ResponsePlan) -> ResponsePlan {
    let (mut kept, unnamed): (Vec<Task>, Vec<Task>) = plan
        .into_tasks()
        .into_iter()
        .partition(|task| !task.queue.is_containment() || is_actionable_target(&task.target));
    if let Some(note) = kept.iter_mut().find(|task| !task.queue.is_containment()) {
        for task in unnamed {
            for step in &task.steps {
                if !note.steps.contains(step) {
                    note.steps.push(step.clone());
                }
            }
            note.checklist.push(format!(
                "{}: the alert names no target for {}, so it is not planned as a task; do it by hand if needed: {}",
                task.steps.join(", "),
                task.action,
                task.reason
            ));
        }
    }
    let mut plan = ResponsePlan::new();
    for task in kept {
        plan.push(task);
    }
    plan
}

/// Adds what the notification worker needs to find the resource's owner by tag (an ARM read
/// the pure handlers cannot do): the tag name and the resource to read it from.
pub(crate) fn with_owner_lookup(
    task: Task,
    policy: &Policy,
    resource: Option<&AzureResourceId>,
) -> Task {
    match resource {
        Some(resource) => task
            .fact("owner_tag", policy.owner_tag.clone())
            .fact("owner_lookup_resource", resource.as_str()),
        None => task,
    }
}

#[cfg(test)]
mod tests;
