//! The policy file (JSON): its documented format, and validation whose errors name the bad entry.
//!
//! See `docs/policy.md` for the format and `examples/policy/*.json` for complete examples.
//! Every field is optional; app settings (`RESPONDER_*`) are applied on top by `config.rs`.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;

use super::notifications::NotificationsEntry;
use super::timeouts::{check_rule, OnTimeout, TimeoutRule};
use super::{AutomationRule, KnownPrincipal, Mode, Policy};
use crate::domain::{Action, PlaybookSteps, Severity};

/// The policy file as written, before validation.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Publish containment as dry runs.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// The organisation's tenant ids.
    #[serde(default)]
    pub tenant_ids: Vec<String>,
    /// Trusted CIDR ranges (or single addresses).
    #[serde(default)]
    pub trusted_ip_ranges: Vec<String>,
    /// Whether private addresses count as trusted (default true).
    #[serde(default)]
    pub trust_private_addresses: Option<bool>,
    /// Trusted virtual networks / subnets (resource ids).
    #[serde(default)]
    pub trusted_virtual_networks: Vec<String>,
    /// The security team's addresses.
    #[serde(default)]
    pub notify_recipients: Vec<String>,
    /// Tenant administrators (KV-2c).
    #[serde(default)]
    pub tenant_admins: Vec<String>,
    /// The owner tag name.
    #[serde(default)]
    pub owner_tag: Option<String>,
    /// Resource id prefix → owners.
    #[serde(default)]
    pub owners: BTreeMap<String, Vec<String>>,
    /// Known principals.
    #[serde(default)]
    pub known_principals: Vec<PrincipalEntry>,
    /// Ask the tenant admin about unknown principals of the own tenant (default true).
    #[serde(default)]
    pub ask_admin_about_unknown_principals: Option<bool>,
    /// The responder's own object ids.
    #[serde(default)]
    pub self_object_ids: Vec<String>,
    /// Cap on per-object rotation tasks.
    #[serde(default)]
    pub max_rotation_tasks: Option<usize>,
    /// Hours after which a done, unconfirmed isolation change is undone (none: never).
    #[serde(default)]
    pub containment_expiry_hours: Option<u32>,
    /// Automation rules, in order.
    #[serde(default)]
    pub automation: Vec<RuleEntry>,
    /// Mode when no rule applies.
    #[serde(default)]
    pub default_mode: Option<String>,
    /// Notification channels and routing.
    #[serde(default)]
    pub notifications: Option<NotificationsEntry>,
    /// What a decision timeout does when a task's rule says nothing.
    #[serde(default)]
    pub decisions: Option<DecisionsEntry>,
}

/// The `decisions` section as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsEntry {
    /// `expire` or `escalate` (`proceed` only on a rule).
    #[serde(default)]
    pub on_timeout: Option<String>,
    /// Who is asked again on `escalate`.
    #[serde(default)]
    pub escalate_to: Vec<String>,
}

/// One `known_principals` entry as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    /// Object id, application id or UPN.
    #[serde(default)]
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Owners.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Entra roles held.
    #[serde(default)]
    pub entra_roles: Vec<String>,
    /// Authorised (default true).
    #[serde(default)]
    pub authorized: Option<bool>,
}

/// One `automation` entry as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    /// Action name (snake_case).
    #[serde(default)]
    pub action: Option<String>,
    /// Step id (`KV-2a`, or the heading `KV-2` for all of KV-2a..c).
    #[serde(default)]
    pub step: Option<String>,
    /// `auto`, `approval` or `notify_only`.
    #[serde(default)]
    pub mode: String,
    /// Severity threshold.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// `expire`, `escalate` or `proceed`, for the tasks this rule makes wait.
    #[serde(default)]
    pub on_timeout: Option<String>,
    /// Who is asked again on `escalate` (default: `decisions.escalate_to`).
    #[serde(default)]
    pub escalate_to: Vec<String>,
}

impl PolicyFile {
    /// Parses the file's text; the error names the line and column, or the unknown field.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|err| err.to_string())
    }

    /// Validates every entry and builds the policy; each error names its entry, e.g.
    /// `automation[2].action: "rotate_all" is not an action`. Rule steps must be among
    /// `steps` (the registry's, `Registry::steps`) or their headings.
    pub fn into_policy(self, steps: &PlaybookSteps) -> Result<Policy, Vec<String>> {
        let mut errors = Vec::new();
        let defaults = Policy::default();
        let mut trusted_ip_ranges = Vec::new();
        for (index, text) in self.trusted_ip_ranges.iter().enumerate() {
            match parse_range(text) {
                Some(range) => trusted_ip_ranges.push(range),
                None => errors.push(format!(
                    "trusted_ip_ranges[{index}]: {text:?} is not a CIDR range or an address"
                )),
            }
        }
        for (index, id) in self.trusted_virtual_networks.iter().enumerate() {
            let lower = id.to_ascii_lowercase();
            if !lower.starts_with("/subscriptions/")
                || !lower.contains("/providers/microsoft.network/virtualnetworks/")
            {
                errors.push(format!(
                    "trusted_virtual_networks[{index}]: {id:?} is not a virtual network or subnet resource id"
                ));
            }
        }
        for (index, tenant) in self.tenant_ids.iter().enumerate() {
            if !looks_like_guid(tenant) {
                errors.push(format!(
                    "tenant_ids[{index}]: {tenant:?} is not a tenant id (GUID)"
                ));
            }
        }
        for (prefix, people) in &self.owners {
            if !prefix.to_ascii_lowercase().starts_with("/subscriptions/") {
                errors.push(format!(
                    "owners[{prefix:?}]: the key must be a resource id prefix starting with /subscriptions/"
                ));
            }
            if people.is_empty() {
                errors.push(format!("owners[{prefix:?}]: names no one"));
            }
        }
        let mut known_principals = Vec::new();
        let mut seen_ids: Vec<(usize, String)> = Vec::new();
        for (index, entry) in self.known_principals.into_iter().enumerate() {
            if entry.id.trim().is_empty() {
                errors.push(format!(
                    "known_principals[{index}].id: missing (object id, application id or UPN)"
                ));
                continue;
            }
            if let Some((first, _)) = seen_ids
                .iter()
                .find(|(_, id): &&(usize, String)| id.eq_ignore_ascii_case(entry.id.trim()))
            {
                errors.push(format!(
                    "known_principals[{index}].id: {:?} is already known_principals[{first}]",
                    entry.id
                ));
                continue;
            }
            seen_ids.push((index, entry.id.trim().to_string()));
            known_principals.push(KnownPrincipal {
                id: entry.id.trim().to_string(),
                name: entry.name,
                owners: entry.owners,
                entra_roles: entry.entra_roles,
                authorized: entry.authorized.unwrap_or(true),
            });
        }
        let on_timeout = match &self.decisions {
            None => TimeoutRule::default(),
            Some(decisions) => parse_decisions(decisions, &mut errors),
        };
        let mut automation = Vec::new();
        for (index, entry) in self.automation.into_iter().enumerate() {
            match parse_rule(&entry, steps, &on_timeout.escalate_to) {
                Ok(rule) => automation.push(rule),
                Err(problem) => errors.push(format!("automation[{index}]{problem}")),
            }
        }
        let default_mode = match self.default_mode.as_deref() {
            None => defaults.default_mode,
            Some(text) => Mode::parse(text).unwrap_or_else(|| {
                errors.push(format!(
                    "default_mode: {text:?} is not auto, approval or notify_only"
                ));
                defaults.default_mode
            }),
        };
        let notifications = self
            .notifications
            .map(|entry| entry.into_policy(&mut errors))
            .unwrap_or_default();
        if self.max_rotation_tasks == Some(0) {
            errors.push("max_rotation_tasks: must be at least 1".to_string());
        }
        if let Some(hours) = self.containment_expiry_hours {
            if !(1..=super::MAX_CONTAINMENT_EXPIRY_HOURS).contains(&hours) {
                errors.push(format!(
                    "containment_expiry_hours: {hours} must be a whole number of hours from 1 to {}",
                    super::MAX_CONTAINMENT_EXPIRY_HOURS
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Policy {
            dry_run: self.dry_run.unwrap_or(defaults.dry_run),
            tenant_ids: self
                .tenant_ids
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            trusted_ip_ranges,
            trust_private_addresses: self
                .trust_private_addresses
                .unwrap_or(defaults.trust_private_addresses),
            trusted_virtual_networks: self.trusted_virtual_networks,
            notify_recipients: self.notify_recipients,
            tenant_admins: self.tenant_admins,
            owner_tag: self.owner_tag.unwrap_or(defaults.owner_tag),
            owners: self.owners,
            known_principals,
            ask_admin_about_unknown_principals: self
                .ask_admin_about_unknown_principals
                .unwrap_or(defaults.ask_admin_about_unknown_principals),
            self_object_ids: self.self_object_ids,
            max_rotation_tasks: self
                .max_rotation_tasks
                .unwrap_or(defaults.max_rotation_tasks),
            containment_expiry_hours: self.containment_expiry_hours,
            automation,
            default_mode,
            notifications,
            on_timeout,
        })
    }
}

/// Parses a policy file's text into a policy whose rules name only `steps` (the registry's,
/// `Registry::steps`) or their headings; the error lists every bad entry.
pub fn parse_policy(text: &str, steps: &PlaybookSteps) -> Result<Policy, String> {
    PolicyFile::parse(text)?
        .into_policy(steps)
        .map_err(|errors| errors.join("; "))
}

fn parse_decisions(entry: &DecisionsEntry, errors: &mut Vec<String>) -> TimeoutRule {
    let on_timeout = match entry.on_timeout.as_deref() {
        None => OnTimeout::Expire,
        Some(text) => match OnTimeout::parse(text) {
            Some(OnTimeout::Proceed) => {
                errors.push(
                    "decisions.on_timeout: proceed is allowed only on an automation rule (for the tasks it covers), never for every task".to_string(),
                );
                OnTimeout::Expire
            }
            Some(on_timeout) => on_timeout,
            None => {
                errors.push(format!(
                    "decisions.on_timeout: {text:?} is not expire or escalate"
                ));
                OnTimeout::Expire
            }
        },
    };
    if on_timeout == OnTimeout::Escalate && entry.escalate_to.is_empty() {
        errors.push("decisions.escalate_to: escalate needs someone to ask".to_string());
    }
    if entry
        .escalate_to
        .iter()
        .any(|person| person.trim().is_empty())
    {
        errors.push("decisions.escalate_to: an entry is empty".to_string());
    }
    TimeoutRule {
        on_timeout,
        escalate_to: entry.escalate_to.clone(),
    }
}

fn parse_rule(
    entry: &RuleEntry,
    steps: &PlaybookSteps,
    default_escalate_to: &[String],
) -> Result<AutomationRule, String> {
    let action = match entry.action.as_deref() {
        None => None,
        Some(name) => Some(
            Action::ALL
                .iter()
                .copied()
                .find(|action| action.as_str().eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| format!(".action: {name:?} is not an action"))?,
        ),
    };
    if let Some(action) = action {
        if !action.queue().is_containment() {
            return Err(format!(
                ".action: {action} is a notification; notifications always go out and take no mode"
            ));
        }
    }
    let step = match entry.step.as_deref() {
        None => None,
        Some(step) => Some(
            steps
                .rule_step(step)
                .map(str::to_string)
                .ok_or_else(|| format!(".step: {step:?} is not a playbook step id"))?,
        ),
    };
    if action.is_none() && step.is_none() {
        return Err(": names neither an action nor a step".to_string());
    }
    let mode = Mode::parse(&entry.mode).ok_or_else(|| {
        format!(
            ".mode: {:?} is not auto, approval or notify_only",
            entry.mode
        )
    })?;
    let min_severity = match entry.min_severity.as_deref() {
        None => None,
        Some(text) => Some(
            Severity::parse(text)
                .filter(|severity| *severity != Severity::Unknown)
                .ok_or_else(|| {
                    format!(".min_severity: {text:?} is not Informational, Low, Medium or High")
                })?,
        ),
    };
    let on_timeout = match entry.on_timeout.as_deref() {
        None if !entry.escalate_to.is_empty() => {
            return Err(".escalate_to: only used with on_timeout escalate".to_string())
        }
        None => None,
        Some(text) => {
            let on_timeout = OnTimeout::parse(text).ok_or_else(|| {
                format!(".on_timeout: {text:?} is not expire, escalate or proceed")
            })?;
            let rule = TimeoutRule {
                on_timeout,
                escalate_to: entry.escalate_to.clone(),
            };
            check_rule(
                &rule,
                mode,
                min_severity.is_some(),
                action,
                default_escalate_to,
            )?;
            Some(rule)
        }
    };
    Ok(AutomationRule {
        action,
        step,
        mode,
        min_severity,
        on_timeout,
    })
}

/// Parses a CIDR range or a single address.
pub fn parse_range(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn looks_like_guid(text: &str) -> bool {
    let text = text.trim();
    text.len() == 36
        && text.chars().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}
