//! The response policy: what runs automatically, what waits for a person, and what never acts.
//!
//! Read once at start-up from app settings (see `config.rs`). The defaults are safe: every
//! alert is notified, nothing is contained on a simulated alert, and `dry_run` marks every
//! containment task as a rehearsal.

use ipnet::IpNet;

use crate::domain::{Entity, ResponsePlan, SecurityAlert, TaskStatus};

/// The organisation's response policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// When true, containment tasks are published as dry runs: workers only report.
    pub dry_run: bool,
    /// The organisation's own Entra tenant ids (lower case).
    pub tenant_ids: Vec<String>,
    /// Address ranges the organisation trusts (its networks, VPN egress, ...).
    pub trusted_ip_ranges: Vec<IpNet>,
    /// Who receives notifications when no owner can be found (the security team).
    pub notify_recipients: Vec<String>,
    /// The resource tag that names a resource's owner.
    pub owner_tag: String,
    /// Object ids of the responder's own identities: alerts they caused are never acted on
    /// automatically (loop protection).
    pub self_object_ids: Vec<String>,
}

impl Policy {
    /// Whether the alert was caused by one of the responder's own identities.
    pub fn caused_by_self(&self, alert: &SecurityAlert) -> bool {
        if self.self_object_ids.is_empty() {
            return false;
        }
        let is_self = |id: &str| {
            self.self_object_ids
                .iter()
                .any(|own| own.eq_ignore_ascii_case(id.trim()))
        };
        let from_entities = alert.entities.iter().any(
            |entity| matches!(entity, Entity::Account { aad_user_id: Some(id), .. } if is_self(id)),
        );
        let from_properties = ["Attacker Object ID", "Object ID", "Application ID"]
            .iter()
            .filter_map(|key| alert.extended(key))
            .any(is_self);
        from_entities || from_properties
    }

    /// Applies the global safety rules to a plan a service handler produced: dry runs for
    /// simulated alerts and in dry-run mode, and no automatic containment of the responder's
    /// own actions.
    pub fn finalize(&self, alert: &SecurityAlert, plan: &mut ResponsePlan) {
        let simulated = alert.is_simulated();
        let own_doing = self.caused_by_self(alert);
        for task in plan.tasks_mut() {
            if !task.queue.is_containment() {
                continue;
            }
            if simulated || self.dry_run {
                task.dry_run = true;
            }
            if own_doing {
                task.status = TaskStatus::PendingApproval;
                task.dry_run = true;
            }
        }
    }
}
