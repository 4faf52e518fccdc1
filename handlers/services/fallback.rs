//! GEN-1: the notification-only plan for alerts of other Defender plans and undocumented types.

use super::{notify_targets, PlanInput, ServiceHandler};
use crate::domain::catalog::CatalogEntry;
use crate::domain::{Entity, Parameters, ResponsePlan, ServiceName, Subject, Task};

/// Tells the security team, with the alert's resource, entities and portal link; no
/// containment and no step of another plan (playbook GEN-1).
pub struct Fallback;

impl Fallback {
    /// The name of alerts no handler owns (the playbook's GEN-1).
    pub const NAME: ServiceName = ServiceName::new("unknown");
}

impl ServiceHandler for Fallback {
    fn service(&self) -> ServiceName {
        Fallback::NAME
    }

    fn catalog(&self) -> &'static [CatalogEntry] {
        &[]
    }

    fn steps(&self) -> &'static [&'static str] {
        &["GEN-1"]
    }

    fn contact_step(&self) -> &'static str {
        "GEN-1"
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let reason = format!(
            "GEN-1: alert type {} is not one of the Key Vault, DNS or Resource Manager types this playbook covers, \
             so no automatic containment is planned; the security team reviews it with its resource, entities and portal link.",
            alert.alert_type
        );
        let mut ips: Vec<String> = Vec::new();
        let mut accounts: Vec<String> = Vec::new();
        let mut hosts: Vec<String> = Vec::new();
        let add = |list: &mut Vec<String>, value: String| {
            if !value.trim().is_empty() && !list.contains(&value) {
                list.push(value);
            }
        };
        for entity in &alert.entities {
            match entity {
                Entity::Ip { address, .. } => add(&mut ips, address.clone()),
                Entity::Account {
                    name, aad_user_id, ..
                } => {
                    let label = entity
                        .user_principal_name()
                        .or_else(|| name.clone())
                        .or_else(|| aad_user_id.clone())
                        .unwrap_or_default();
                    add(&mut accounts, label);
                }
                Entity::Host {
                    host_name,
                    azure_id,
                } => add(
                    &mut hosts,
                    host_name
                        .clone()
                        .or_else(|| azure_id.as_ref().map(|id| id.as_str().to_string()))
                        .unwrap_or_default(),
                ),
                Entity::Dns {
                    host_ip_address: Some(ip),
                    ..
                } => add(&mut ips, ip.clone()),
                _ => {}
            }
        }
        let task = Task::new(
            input.alert_ref,
            Parameters::NotifySecurityTeam {
                subject: Subject::from_label(&alert.resource_label()),
            },
            &["GEN-1"],
            reason,
        )
        .fact("alert_type", alert.alert_type.clone())
        .fact(
            "display_name",
            alert.display_name.clone().unwrap_or_default(),
        )
        .fact("ip_addresses", ips.join(", "))
        .fact("accounts", accounts.join(", "))
        .fact("hosts", hosts.join(", "))
        .fact("alert_uri", alert.alert_uri.clone().unwrap_or_default())
        .checklist(alert.remediation_steps.iter().cloned())
        .recipients(notify_targets(input.policy, alert.resource_id.as_ref()));
        let mut plan = ResponsePlan::new();
        plan.push(task);
        plan
    }
}
