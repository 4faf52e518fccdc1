//! Policy settings: the optional policy file and the `RESPONDER_*` settings applied on top of it.

use super::{list, parse_bool, Lookup, Setting};
use crate::error::Error;
use crate::policy::file::parse_policy;
use crate::policy::Policy;

/// Global dry run for containment tasks.
pub const DRY_RUN: &str = "RESPONDER_DRY_RUN";
/// The organisation's Entra tenant ids.
pub const TENANT_IDS: &str = "RESPONDER_TENANT_IDS";
/// Trusted address ranges.
pub const TRUSTED_IP_RANGES: &str = "RESPONDER_TRUSTED_IP_RANGES";
/// Who receives notifications.
pub const NOTIFY_RECIPIENTS: &str = "RESPONDER_NOTIFY_RECIPIENTS";
/// Tag naming a resource's owner.
pub const OWNER_TAG: &str = "RESPONDER_OWNER_TAG";
/// The responder's own identities (loop protection).
pub const SELF_OBJECT_IDS: &str = "RESPONDER_SELF_OBJECT_IDS";
/// Path of the optional policy file (JSON; see docs/policy.md).
pub const POLICY_FILE: &str = "RESPONDER_POLICY_FILE";

/// The settings of this area, for the documentation and the drift tests.
pub(super) const SETTINGS: &[Setting] = &[
    Setting { name: DRY_RUN, default: "false", description: "true: containment tasks are published as dry runs (workers only report)." },
    Setting { name: TENANT_IDS, default: "", description: "Comma-separated Entra tenant ids (GUIDs) of the organisation." },
    Setting { name: TRUSTED_IP_RANGES, default: "", description: "Comma-separated CIDR ranges the organisation trusts." },
    Setting { name: NOTIFY_RECIPIENTS, default: "", description: "Comma-separated addresses that receive notifications." },
    Setting { name: OWNER_TAG, default: "owner", description: "Resource tag that names a resource's owner." },
    Setting { name: SELF_OBJECT_IDS, default: "", description: "Comma-separated object ids (GUIDs) of the responder's own identities; alerts they cause are never acted on automatically." },
    Setting { name: POLICY_FILE, default: "", description: "Path of the JSON policy file (automation modes, known principals, owners, trusted networks); the other RESPONDER_* policy settings are applied on top of it." },
];

/// Builds the policy: the policy file (when `RESPONDER_POLICY_FILE` names one), then the
/// `RESPONDER_*` app settings on top. Lists from settings are added to the file's; a set
/// `RESPONDER_DRY_RUN` or `RESPONDER_OWNER_TAG` replaces the file's value.
pub fn policy_from_lookup(
    get: Lookup<'_>,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<Policy, Error> {
    let mut policy = match get(POLICY_FILE) {
        Some(path) => {
            let text = read(&path).map_err(|err| {
                Error::configuration(format!("{POLICY_FILE}={path:?}: cannot read: {err}"))
            })?;
            parse_policy(&text).map_err(|problems| {
                Error::configuration(format!("{POLICY_FILE}={path:?}: {problems}"))
            })?
        }
        None => Policy::default(),
    };
    if let Some(dry_run) = parse_bool(DRY_RUN, get(DRY_RUN))? {
        policy.dry_run = dry_run;
    }
    let extend = |into: &mut Vec<String>, items: Vec<String>| {
        for item in items {
            if !into.iter().any(|have| have.eq_ignore_ascii_case(&item)) {
                into.push(item);
            }
        }
    };
    extend(&mut policy.tenant_ids, guids(TENANT_IDS, get(TENANT_IDS))?);
    for range in list(get(TRUSTED_IP_RANGES)) {
        let range = crate::policy::file::parse_range(&range).ok_or_else(|| {
            Error::configuration(format!(
                "{TRUSTED_IP_RANGES}: {range:?} is not a CIDR range or an address"
            ))
        })?;
        if !policy.trusted_ip_ranges.contains(&range) {
            policy.trusted_ip_ranges.push(range);
        }
    }
    extend(&mut policy.notify_recipients, list(get(NOTIFY_RECIPIENTS)));
    if let Some(tag) = get(OWNER_TAG) {
        policy.owner_tag = tag;
    }
    extend(
        &mut policy.self_object_ids,
        guids(SELF_OBJECT_IDS, get(SELF_OBJECT_IDS))?,
    );
    Ok(policy)
}

/// A comma-separated list of GUIDs, lowercased; the error names the setting and the entry.
fn guids(setting: &str, value: Option<String>) -> Result<Vec<String>, Error> {
    list(value)
        .into_iter()
        .map(|item| {
            if is_guid(&item) {
                Ok(item.to_ascii_lowercase())
            } else {
                Err(Error::configuration(format!(
                    "{setting}: {item:?} is not a GUID (8-4-4-4-12 hexadecimal digits)"
                )))
            }
        })
        .collect()
}

/// Whether `text` is a GUID in its 8-4-4-4-12 form.
pub fn is_guid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}
