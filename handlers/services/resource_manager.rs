//! Defender for Resource Manager alerts → playbook steps ARM-1 … ARM-2c.

use super::{notify_targets, PlanInput, ServiceHandler};
use crate::domain::{Action, ResponsePlan, Service, Task};

/// The Resource Manager handler.
pub struct ResourceManager;

impl ServiceHandler for ResourceManager {
    fn service(&self) -> Service {
        Service::ResourceManager
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let resource = alert.resource_label();
        let caller = alert
            .extended("User principal name")
            .or_else(|| alert.extended("Object ID"))
            .unwrap_or("an unidentified caller");
        let mut plan = ResponsePlan::new();
        plan.push(
            Task::new(
                input.alert_ref,
                Action::ContactOwner,
                &["ARM-1"],
                resource.clone(),
                format!("ARM-1: {caller} performed the activity behind this alert on {resource}; ask its owner whether it was expected."),
            )
            .fact("caller", caller)
            .recipients(notify_targets(input.policy)),
        );
        plan
    }
}
