//! The shape of a catalogue row: a documented alert type (alert-catalog.md) and its traits.
//!
//! Each service declares its own rows beside its handler (`services/<service>.rs`); the
//! registry routes by exact alert type (case-insensitively, after removing the simulator's
//! `SIMULATED_` prefix), never by prefix guessing: `RM_` and `Arm_` types exist, and an
//! undocumented `KV_*` type is not known to behave like the documented ones.

use super::alert::{ServiceName, Severity};

/// What the catalogue says an alert type implies beyond its service's base playbook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Traits(u16);

impl Traits {
    /// Nothing beyond the base playbook.
    pub const NONE: Traits = Traits(0);
    /// Key Vault accessed from an IP threat intelligence flags: firewall the vault (KV-2a).
    pub const UNKNOWN_IP_ACCESS: Traits = Traits(1 << 0);
    /// Access was denied: nothing was read unless other facts show reads.
    pub const ACCESS_DENIED: Traits = Traits(1 << 1);
    /// Code ran on virtual machines: remediate the affected VMs (ARM-2c).
    pub const VM_COMPROMISE: Traits = Traits(1 << 2);
    /// Secrets or keys were pulled out of key vaults: rotate them (KV-4 from an ARM alert).
    pub const KEY_VAULT_DUMP: Traits = Traits(1 << 3);
    /// Storage account keys were listed: rotate them.
    pub const STORAGE_KEYS: Traits = Traits(1 << 4);
    /// Automation accounts were used: remove unfamiliar runbooks, rotate Automation credentials.
    pub const AUTOMATION: Traits = Traits(1 << 5);
    /// Role assignments or definitions were created: remove the suspicious ones.
    pub const ROLE_CHANGE: Traits = Traits(1 << 6);
    /// An access policy was widened before secrets were read: revert it.
    pub const POLICY_CHANGE: Traits = Traits(1 << 7);

    /// Both sets of traits.
    pub const fn union(self, other: Traits) -> Traits {
        Traits(self.0 | other.0)
    }

    /// Whether every trait of `other` is set here.
    pub const fn contains(self, other: Traits) -> bool {
        self.0 & other.0 == other.0
    }
}

/// One documented alert type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The alert type id exactly as documented.
    pub alert_type: &'static str,
    /// The Defender plan that raises it.
    pub service: ServiceName,
    /// Documented severity (`Unknown` where the page says "-").
    pub documented_severity: Severity,
    /// Documented MITRE tactic(s).
    pub tactic: &'static str,
    /// Documented display name.
    pub display_name: &'static str,
    /// What the type implies for the response.
    pub traits: Traits,
}

/// A catalogue row (the rows live beside each service's handler).
pub const fn entry(
    alert_type: &'static str,
    service: ServiceName,
    documented_severity: Severity,
    tactic: &'static str,
    display_name: &'static str,
    traits: Traits,
) -> CatalogEntry {
    CatalogEntry {
        alert_type,
        service,
        documented_severity,
        tactic,
        display_name,
        traits,
    }
}
