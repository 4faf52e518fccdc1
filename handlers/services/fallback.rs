//! The notification-only plan for alert types no handler owns: nothing is dropped silently.

use super::{notify_targets, PlanInput, ServiceHandler};
use crate::domain::{Action, ResponsePlan, Service, Task};

/// Plans a single security-team notification carrying Defender's own remediation steps.
pub struct Fallback;

impl ServiceHandler for Fallback {
    fn service(&self) -> Service {
        Service::Unknown
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let step = match input.entry.map(|entry| entry.service) {
            Some(Service::KeyVault) => "KV-1",
            Some(Service::Dns) => "DNS-1",
            _ => "ARM-1",
        };
        let reason = format!(
            "{}: alert type {} is not in the documented catalogue, so no automatic containment is planned; \
             a person must review it against the playbook (step {step}: confirm with the owner whether it was expected).",
            step, alert.alert_type
        );
        let task = Task::new(
            input.alert_ref,
            Action::NotifySecurityTeam,
            &[step],
            alert.resource_label(),
            reason,
        )
        .fact("alert_type", alert.alert_type.clone())
        .fact(
            "display_name",
            alert.display_name.clone().unwrap_or_default(),
        )
        .checklist(alert.remediation_steps.iter().cloned())
        .recipients(notify_targets(input.policy, alert.resource_id.as_ref()));
        let mut plan = ResponsePlan::new();
        plan.push(task);
        plan
    }
}
