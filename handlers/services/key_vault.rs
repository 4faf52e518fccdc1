//! Defender for Key Vault alerts → playbook steps KV-1 … KV-4c.

use super::{notify_targets, PlanInput, ServiceHandler};
use crate::domain::catalog::Traits;
use crate::domain::{Action, Entity, ResponsePlan, Service, Task};

/// The Key Vault handler.
pub struct KeyVault;

impl ServiceHandler for KeyVault {
    fn service(&self) -> Service {
        Service::KeyVault
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let traits = input.entry.map(|entry| entry.traits).unwrap_or_default();
        let vault = alert.resource_label();
        let caller_ip = alert
            .extended("Attacker IP Address")
            .map(str::to_string)
            .or_else(|| {
                alert.entities.iter().find_map(|entity| match entity {
                    Entity::Ip { address, .. } => Some(address.clone()),
                    _ => None,
                })
            });
        let caller = alert
            .extended("User Principal Name")
            .map(str::to_string)
            .or_else(|| alert.entities.iter().find_map(Entity::user_principal_name))
            .or_else(|| alert.extended("Attacker Object ID").map(str::to_string))
            .unwrap_or_else(|| "an unidentified caller".to_string());

        let mut plan = ResponsePlan::new();
        plan.push(
            Task::new(
                input.alert_ref,
                Action::ContactOwner,
                &["KV-1"],
                vault.clone(),
                format!("KV-1: {caller} accessed {vault}; ask its owner whether this access was expected."),
            )
            .fact("caller", caller.clone())
            .fact("caller_ip", caller_ip.clone().unwrap_or_default())
            .recipients(notify_targets(input.policy)),
        );
        if traits.contains(Traits::UNKNOWN_IP_ACCESS) {
            if let Some(ip) = &caller_ip {
                plan.push(
                    Task::new(
                        input.alert_ref,
                        Action::EnableKeyVaultFirewall,
                        &["KV-2a"],
                        vault.clone(),
                        format!("KV-2a: {ip} is flagged by threat intelligence; deny by default and allow only trusted networks."),
                    )
                    .fact("caller_ip", ip.clone()),
                );
            }
        }
        if !traits.contains(Traits::ACCESS_DENIED) {
            if let Some(target) = alert.extended("Target").filter(|t| t.contains("/secrets/")) {
                plan.push(Task::new(
                    input.alert_ref,
                    Action::RotateSecret,
                    &["KV-4a"],
                    target,
                    format!("KV-4a: {caller} read {target}; rotate it."),
                ));
            }
        }
        plan
    }
}
