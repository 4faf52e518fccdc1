//! Defender for DNS alerts → playbook steps DNS-1 … DNS-2d.

use super::{notify_targets, PlanInput, ServiceHandler};
use crate::domain::{Action, Entity, ResponsePlan, Service, Task, TaskStatus};

/// The DNS handler.
pub struct Dns;

impl ServiceHandler for Dns {
    fn service(&self) -> Service {
        Service::Dns
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let resource = alert.resource_label();
        let domains: Vec<String> = alert
            .entities
            .iter()
            .filter_map(|entity| match entity {
                Entity::Dns { domain_name, .. } => Some(domain_name.clone()),
                _ => None,
            })
            .collect();
        let domains = if domains.is_empty() {
            alert
                .extended("domainName")
                .unwrap_or("(not named)")
                .to_string()
        } else {
            domains.join(", ")
        };
        let mut plan = ResponsePlan::new();
        plan.push(
            Task::new(
                input.alert_ref,
                Action::ContactOwner,
                &["DNS-1"],
                resource.clone(),
                format!("DNS-1: {resource} looked up {domains}; ask its owner whether this was expected."),
            )
            .fact("domains", domains.clone())
            .recipients(notify_targets(input.policy)),
        );
        let mut isolate = Task::new(
            input.alert_ref,
            Action::IsolateResourceNetwork,
            &["DNS-2"],
            resource.clone(),
            format!("DNS-2: if the lookups of {domains} were not expected, isolate {resource} to stop lateral movement."),
        );
        isolate.status = TaskStatus::PendingApproval;
        plan.push(isolate);
        plan
    }
}
