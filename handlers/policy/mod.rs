//! The response policy: what runs automatically, what waits for a person, and what never acts.
//!
//! Read once at start-up from app settings and an optional policy file (see `config.rs` and
//! [`file`]). Handlers read the facts part (tenants, trusted networks, known principals,
//! owners) to decide which playbook steps apply; [`Policy::finalize`] then applies the
//! automation part (per action or step: `auto`, `approval` or `notify_only`, with a severity
//! threshold) and the global safety rules (dry run, simulated alerts, loop protection).
//!
//! The defaults are safe: everybody is notified, every containment task waits for a person's
//! decision, except the antimalware scan (read-only for the workload, so a cautious team runs
//! it at once).

pub mod file;
pub mod notifications;
pub mod timeouts;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::domain::parameters::ManualStep;
use crate::domain::{
    Action, AzureResourceId, Entity, Parameters, PolicyDecision, ResponsePlan, SecurityAlert,
    Severity, Subject, Task, TaskStatus,
};

pub use file::PolicyFile;
pub use timeouts::{OnTimeout, TimeoutDecision, TimeoutRule};

/// How a containment task is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Published ready: the worker carries it out at once.
    Auto,
    /// Published as `pending_approval`, with a `request_decision` notification asking for it.
    Approval,
    /// Not published: the step becomes a checklist item of the decision notification.
    NotifyOnly,
}

impl Mode {
    /// Parses `auto`, `approval` or `notify_only`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "auto" => Some(Mode::Auto),
            "approval" => Some(Mode::Approval),
            "notify_only" => Some(Mode::NotifyOnly),
            _ => None,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Approval => "approval",
            Mode::NotifyOnly => "notify_only",
        }
    }

    /// The next more cautious mode, used below a rule's severity threshold.
    pub fn milder(self) -> Self {
        match self {
            Mode::Auto => Mode::Approval,
            Mode::Approval | Mode::NotifyOnly => Mode::NotifyOnly,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One automation rule: which tasks it covers (by action, by step, or both) and their mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutomationRule {
    /// The action it covers (`None`: any action of the step).
    pub action: Option<Action>,
    /// The playbook step it covers (`KV-2` also covers `KV-2a`..; `None`: any step).
    pub step: Option<String>,
    /// The mode at or above `min_severity`.
    pub mode: Mode,
    /// Below this severity the mode is one notch milder (auto → approval → notify_only).
    pub min_severity: Option<Severity>,
    /// What a decision timeout does to the tasks this rule makes wait (`None`: the policy's
    /// `decisions`).
    pub on_timeout: Option<TimeoutRule>,
}

impl AutomationRule {
    /// Whether the rule covers a task.
    pub fn covers(&self, task: &Task) -> bool {
        let action_ok = self.action.is_none_or(|action| action == task.action);
        let step_ok = self.step.as_deref().is_none_or(|rule_step| {
            task.steps
                .iter()
                .any(|task_step| step_covers(rule_step, task_step))
        });
        action_ok && step_ok
    }

    /// The mode for an alert of `severity`.
    pub fn mode_for(&self, severity: Severity) -> Mode {
        match self.min_severity {
            Some(threshold) if severity < threshold => self.mode.milder(),
            _ => self.mode,
        }
    }
}

/// Whether a rule's step id covers a task's step id: equal, or a sub-step (`KV-2` → `KV-2a`).
pub fn step_covers(rule_step: &str, task_step: &str) -> bool {
    if rule_step.eq_ignore_ascii_case(task_step) {
        return true;
    }
    task_step.len() == rule_step.len() + 1
        && task_step[..rule_step.len()].eq_ignore_ascii_case(rule_step)
        && task_step
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_lowercase())
}

/// The rules that apply after the organisation's own ones: the safe defaults.
///
/// Only the antimalware scan runs automatically: it changes nothing an application depends
/// on and its result is needed for every later decision. Everything else waits for a person.
pub fn builtin_rules() -> Vec<AutomationRule> {
    BUILTIN_RULES.to_vec()
}

/// [`builtin_rules`], built once (every containment task of every plan consults them).
static BUILTIN_RULES: [AutomationRule; 1] = [AutomationRule {
    action: Some(Action::RunAntimalwareScan),
    step: None,
    mode: Mode::Auto,
    min_severity: None,
    on_timeout: None,
}];

/// A security principal the organisation knows (a user, group, service principal or app).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KnownPrincipal {
    /// Object id, application id or user principal name (matched case-insensitively).
    pub id: String,
    /// A display name for messages.
    pub name: Option<String>,
    /// Who answers for it (notified for KV-1 / KV-4c).
    pub owners: Vec<String>,
    /// Microsoft Entra roles it holds (non-empty → KV-2c applies).
    pub entra_roles: Vec<String>,
    /// Whether it may access the organisation's vaults and subscriptions at all; `false`
    /// marks a principal as known but unauthorised (KV-2b applies).
    pub authorized: bool,
}

/// The organisation's response policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// When true, containment tasks are published as dry runs: workers only report.
    pub dry_run: bool,
    /// The organisation's own Entra tenant ids (lower case).
    pub tenant_ids: Vec<String>,
    /// Address ranges the organisation trusts (its networks, VPN egress, ...).
    pub trusted_ip_ranges: Vec<IpNet>,
    /// Whether private (RFC 1918, ULA, loopback) addresses count as trusted: they can only
    /// reach a vault through the organisation's own virtual networks or private endpoints.
    pub trust_private_addresses: bool,
    /// Virtual networks / subnets (resource ids) the vault firewall keeps allowed (KV-2a).
    pub trusted_virtual_networks: Vec<String>,
    /// Who receives every notification (the security team).
    pub notify_recipients: Vec<String>,
    /// Who is contacted about principals holding Entra roles (KV-2c); the security team when empty.
    pub tenant_admins: Vec<String>,
    /// The resource tag that names a resource's owner (resolved by the notification worker).
    pub owner_tag: String,
    /// Static owners: resource id prefix (subscription, resource group, resource) → recipients.
    pub owners: BTreeMap<String, Vec<String>>,
    /// Principals the organisation knows.
    pub known_principals: Vec<KnownPrincipal>,
    /// When the caller is in the own tenant but not a known principal, ask the tenant admin
    /// to check its Entra roles (KV-2c as a question rather than a fact).
    pub ask_admin_about_unknown_principals: bool,
    /// Object ids of the responder's own identities: alerts they caused are never acted on
    /// automatically (loop protection).
    pub self_object_ids: Vec<String>,
    /// At most this many per-object rotation (and disable) tasks per alert; the rest are
    /// covered by one vault-wide task and listed in the impact report.
    pub max_rotation_tasks: usize,
    /// Hours after which a done isolation change that no person confirmed is undone by the
    /// sweeper (`None`, the default: containment stays until someone undoes it).
    pub containment_expiry_hours: Option<u32>,
    /// The organisation's automation rules, consulted in order before [`builtin_rules`].
    pub automation: Vec<AutomationRule>,
    /// The mode when no rule covers a containment task.
    pub default_mode: Mode,
    /// Notification channels and routing (no channels: the signed webhook of the app settings,
    /// when set, is the only channel).
    pub notifications: notifications::NotificationPolicy,
    /// What a decision timeout does when the rule of the task says nothing (`decisions` in
    /// the file): `expire` by default; never `proceed`.
    pub on_timeout: TimeoutRule,
}

/// The longest [`Policy::containment_expiry_hours`] accepted (30 days).
pub const MAX_CONTAINMENT_EXPIRY_HOURS: u32 = 720;

/// Default for [`Policy::max_rotation_tasks`].
pub const DEFAULT_MAX_ROTATION_TASKS: usize = 25;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            dry_run: false,
            tenant_ids: Vec::new(),
            trusted_ip_ranges: Vec::new(),
            trust_private_addresses: true,
            trusted_virtual_networks: Vec::new(),
            notify_recipients: Vec::new(),
            tenant_admins: Vec::new(),
            owner_tag: "owner".to_string(),
            owners: BTreeMap::new(),
            known_principals: Vec::new(),
            ask_admin_about_unknown_principals: true,
            self_object_ids: Vec::new(),
            max_rotation_tasks: DEFAULT_MAX_ROTATION_TASKS,
            containment_expiry_hours: None,
            automation: Vec::new(),
            default_mode: Mode::Approval,
            notifications: notifications::NotificationPolicy::default(),
            on_timeout: TimeoutRule::default(),
        }
    }
}

impl Policy {
    /// How long an unconfirmed containment stays before the sweeper undoes it, if it expires.
    pub fn containment_expiry(&self) -> Option<std::time::Duration> {
        self.containment_expiry_hours
            .map(|hours| std::time::Duration::from_secs(u64::from(hours) * 3600))
    }

    /// Whether an address is trusted: inside a trusted range, or private when those count.
    pub fn is_trusted_ip(&self, address: &str) -> bool {
        let Ok(ip) = address.trim().parse::<IpAddr>() else {
            return false;
        };
        if self.trust_private_addresses && is_private(ip) {
            return true;
        }
        self.trusted_ip_ranges
            .iter()
            .any(|range| range.contains(&ip))
    }

    /// Whether a tenant id is one of the organisation's.
    pub fn is_own_tenant(&self, tenant_id: &str) -> bool {
        self.tenant_ids
            .iter()
            .any(|own| own.eq_ignore_ascii_case(tenant_id.trim()))
    }

    /// The known principal matching any of the given ids (object id, app id, UPN).
    pub fn known_principal<'a, I>(&self, ids: I) -> Option<&KnownPrincipal>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let ids: Vec<&str> = ids.into_iter().map(str::trim).collect();
        self.known_principals.iter().find(|known| {
            ids.iter()
                .any(|id| !id.is_empty() && known.id.eq_ignore_ascii_case(id))
        })
    }

    /// The static owners of a resource: the entry with the longest matching id prefix.
    pub fn owners_of(&self, resource: Option<&AzureResourceId>) -> Vec<String> {
        let Some(resource) = resource else {
            return Vec::new();
        };
        let id = resource.as_str().to_ascii_lowercase();
        self.owners
            .iter()
            .filter(|(prefix, _)| {
                let prefix = prefix.trim_end_matches('/').to_ascii_lowercase();
                id == prefix || id.starts_with(&format!("{prefix}/"))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, people)| people.clone())
            .unwrap_or_default()
    }

    /// Who hears about a resource: its static owners, then the security team.
    pub fn recipients_for(&self, resource: Option<&AzureResourceId>) -> Vec<String> {
        let mut people = self.owners_of(resource);
        for person in &self.notify_recipients {
            if !people.contains(person) {
                people.push(person.clone());
            }
        }
        people
    }

    /// Who is contacted about Entra roles (KV-2c).
    pub fn admin_recipients(&self) -> Vec<String> {
        if self.tenant_admins.is_empty() {
            self.notify_recipients.clone()
        } else {
            self.tenant_admins.clone()
        }
    }

    /// The mode for a containment task of an alert of `severity`, and the rule that decided.
    pub fn mode_for(&self, task: &Task, severity: Severity) -> (Mode, String) {
        if let Some((index, rule)) = self
            .automation
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.covers(task))
        {
            return (rule.mode_for(severity), format!("automation[{index}]"));
        }
        if let Some(rule) = BUILTIN_RULES.iter().find(|rule| rule.covers(task)) {
            return (rule.mode_for(severity), "built-in default".to_string());
        }
        (self.default_mode, "default_mode".to_string())
    }

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
        let from_properties = [
            "Attacker Object ID",
            "Object ID",
            "principal ID",
            "Application ID",
        ]
        .iter()
        .filter_map(|key| alert.extended(key))
        .any(is_self);
        from_entities || from_properties
    }

    /// Applies the automation rules and the global safety rules to a plan a service handler
    /// produced.
    ///
    /// * Each containment task gets its mode (first matching organisation rule, then the
    ///   built-in defaults, then `default_mode`), lowered one notch below the rule's
    ///   severity threshold.
    /// * `auto` stays ready; `approval` becomes `pending_approval`; `notify_only` is removed
    ///   and its step becomes a checklist item.
    /// * Loop protection: an alert the responder's own identity caused never runs anything
    ///   automatically (`auto` becomes `approval`, and every containment task is a dry run).
    /// * Simulated alerts and the global `dry_run` make every containment task a dry run.
    /// * When anything waits or was left to people, one `request_decision` notification names
    ///   the pending tasks' message ids and carries the manual items.
    pub fn finalize(&self, alert: &SecurityAlert, plan: &mut ResponsePlan) {
        let simulated = alert.is_simulated();
        let own_doing = self.caused_by_self(alert);
        let tasks = plan.take_tasks();
        let mut kept: Vec<Task> = Vec::with_capacity(tasks.len() + 1);
        // Where in `kept` the tasks waiting for approval are (not copies of them).
        let mut pending: Vec<usize> = Vec::new();
        let mut left_to_people: Vec<Task> = Vec::new();
        for mut task in tasks {
            if !task.queue.is_containment() {
                kept.push(task);
                continue;
            }
            let (mut mode, rule) = self.mode_for(&task, alert.severity);
            let mut decision = PolicyDecision {
                mode: mode.as_str().to_string(),
                rule,
                loop_protection: false,
            };
            if own_doing && mode == Mode::Auto {
                mode = Mode::Approval;
                decision.mode = mode.as_str().to_string();
                decision.loop_protection = true;
            }
            task.policy = Some(decision);
            if simulated || self.dry_run || own_doing {
                task.dry_run = true;
            }
            match mode {
                Mode::Auto => {
                    task.status = TaskStatus::Ready;
                    kept.push(task);
                }
                Mode::Approval => {
                    task.status = TaskStatus::PendingApproval;
                    pending.push(kept.len());
                    kept.push(task);
                }
                Mode::NotifyOnly => left_to_people.push(task),
            }
        }
        if !pending.is_empty() || !left_to_people.is_empty() {
            let pending: Vec<&Task> = pending.iter().map(|&index| &kept[index]).collect();
            let request = self.decision_request(alert, &kept, &pending, &left_to_people);
            kept.push(request);
        }
        order_rotations_first(&mut kept);
        for task in kept {
            plan.push(task);
        }
    }

    fn decision_request(
        &self,
        alert: &SecurityAlert,
        kept: &[Task],
        pending: &[&Task],
        left_to_people: &[Task],
    ) -> Task {
        let first = pending
            .first()
            .copied()
            .or_else(|| left_to_people.first())
            .expect("called with at least one task");
        let mut steps: Vec<&str> = Vec::new();
        for task in pending.iter().copied().chain(left_to_people) {
            for step in &task.steps {
                if !steps.contains(&step.as_str()) {
                    steps.push(step);
                }
            }
        }
        let mut sentences: Vec<String> = Vec::new();
        if !pending.is_empty() {
            sentences.push(format!(
                "{} containment task(s) wait for a decision under the policy (severity {}); \
                 approve or reject each by its message id once the owner says whether the activity was expected.",
                pending.len(),
                alert.severity
            ));
        }
        if !left_to_people.is_empty() {
            sentences.push(format!(
                "{} step(s) are notify-only under the policy and must be done by hand if needed (see the checklist).",
                left_to_people.len()
            ));
        }
        let reason = format!("{}: {}", steps.join(", "), sentences.join(" "));
        let mut checklist = Vec::new();
        for task in pending {
            checklist.push(format!(
                "Approve or reject {} on {} (message id {}): {}",
                task.action, task.target, task.message_id, task.reason
            ));
        }
        for task in left_to_people {
            checklist.push(format!(
                "By hand if the activity was not expected, {} on {}: {}",
                task.action, task.target, task.reason
            ));
        }
        let mut recipients: Vec<String> = Vec::new();
        for task in kept.iter().filter(|task| !task.queue.is_containment()) {
            for person in &task.recipients {
                if !recipients.contains(person) {
                    recipients.push(person.clone());
                }
            }
        }
        for person in &self.notify_recipients {
            if !recipients.contains(person) {
                recipients.push(person.clone());
            }
        }
        let notify_only: Vec<ManualStep> = left_to_people
            .iter()
            .map(|task| ManualStep {
                action: task.action,
                target: task.target.clone(),
            })
            .collect();
        Task::new(
            &first.alert,
            Parameters::RequestDecision {
                subject: Subject::from_label(&first.alert.resource),
                pending: pending.iter().map(|task| task.message_id.clone()).collect(),
                notify_only,
            },
            &steps,
            reason,
        )
        .fact("pending_count", pending.len().to_string())
        .checklist(checklist)
        .recipients(recipients)
    }
}

/// Whether an address is private (RFC 1918, CGNAT, ULA, link-local or loopback).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || {
                (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// A vault's firewall closes only after the plan's rotations on that vault have run (they
/// need to reach it): each `enable_key_vault_firewall` task names them in `run_after`.
fn order_rotations_first(tasks: &mut [Task]) {
    let rotations: Vec<(String, crate::domain::MessageId)> = tasks
        .iter()
        .filter(|t| t.queue == crate::domain::Queue::Rotation)
        .filter_map(|t| Some((t.key_vault_name()?, t.message_id.clone())))
        .collect();
    for task in tasks.iter_mut() {
        if task.action != crate::domain::Action::EnableKeyVaultFirewall {
            continue;
        }
        let Some(vault) = task.key_vault_name() else {
            continue;
        };
        task.run_after = rotations
            .iter()
            .filter(|(name, _)| *name == vault)
            .map(|(_, id)| id.clone())
            .collect();
    }
}

#[cfg(test)]
mod timeouts_tests;
