//! The table of the 73 documented Defender alert types this product routes, from alert-catalog.md.
//!
//! Routing is by exact alert type (case-insensitively, after removing the simulator's
//! `SIMULATED_` prefix), never by prefix guessing: `RM_` and `Arm_` types exist, and an
//! undocumented `KV_*` type is not known to behave like the documented ones.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::alert::{Service, Severity};

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
    pub service: Service,
    /// Documented severity (`Unknown` where the page says "-").
    pub documented_severity: Severity,
    /// Documented MITRE tactic(s).
    pub tactic: &'static str,
    /// Documented display name.
    pub display_name: &'static str,
    /// What the type implies for the response.
    pub traits: Traits,
}

const fn entry(
    alert_type: &'static str,
    service: Service,
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

/// Every documented alert type, in the catalogue's order.
pub const CATALOG: &[CatalogEntry] = &[
    entry("KV_SuspiciousIPAccess", Service::KeyVault, Severity::Medium, "Credential Access", "Access from a suspicious IP address to a key vault", Traits::UNKNOWN_IP_ACCESS),
    entry("KV_TORAccess", Service::KeyVault, Severity::Medium, "Credential Access", "Access from a TOR exit node to a key vault", Traits::UNKNOWN_IP_ACCESS),
    entry("KV_OperationVolumeAnomaly", Service::KeyVault, Severity::Medium, "Credential Access", "High volume of operations in a key vault", Traits::NONE),
    entry("KV_PutGetAnomaly", Service::KeyVault, Severity::Medium, "Credential Access", "Suspicious policy change and secret query in a key vault", Traits::POLICY_CHANGE),
    entry("KV_ListGetAnomaly", Service::KeyVault, Severity::Medium, "Credential Access", "Suspicious secret listing and query in a key vault", Traits::NONE),
    entry("KV_AccountVolumeAccessDeniedAnomaly", Service::KeyVault, Severity::Low, "Discovery", "Unusual access denied - User accessing high volume of key vaults denied", Traits::ACCESS_DENIED),
    entry("KV_UserAccessDeniedAnomaly", Service::KeyVault, Severity::Low, "Initial Access, Discovery", "Unusual access denied - Unusual user accessing key vault denied", Traits::ACCESS_DENIED),
    entry("KV_AppAnomaly", Service::KeyVault, Severity::Medium, "Credential Access", "Unusual application accessed a key vault", Traits::NONE),
    entry("KV_OperationPatternAnomaly", Service::KeyVault, Severity::Medium, "Credential Access", "Unusual operation pattern in a key vault", Traits::NONE),
    entry("KV_UserAnomaly", Service::KeyVault, Severity::Medium, "Credential Access", "Unusual user accessed a key vault", Traits::NONE),
    entry("KV_UserAppAnomaly", Service::KeyVault, Severity::Medium, "Credential Access", "Unusual user-application pair accessed a key vault", Traits::NONE),
    entry("KV_AccountVolumeAnomaly", Service::KeyVault, Severity::Medium, "Credential Access", "User accessed high volume of key vaults", Traits::NONE),
    entry("KV_SuspiciousIPAccessDenied", Service::KeyVault, Severity::Low, "Credential Access", "Denied access from a suspicious IP to a key vault", Traits::UNKNOWN_IP_ACCESS.union(Traits::ACCESS_DENIED)),
    entry("KV_UnusualAccessSuspiciousIP", Service::KeyVault, Severity::Medium, "Credential Access", "Unusual access to the key vault from a suspicious IP (Non-Microsoft or external)", Traits::UNKNOWN_IP_ACCESS),
    entry("AzureDNS_ProtocolAnomaly", Service::Dns, Severity::Unknown, "Exfiltration", "Anomalous network protocol usage", Traits::NONE),
    entry("AzureDNS_DarkWeb", Service::Dns, Severity::Low, "Exfiltration", "Anonymity network activity", Traits::NONE),
    entry("AzureDNS_DarkWebProxy", Service::Dns, Severity::Low, "Exfiltration", "Anonymity network activity using web proxy", Traits::NONE),
    entry("AzureDNS_SinkholedDomain", Service::Dns, Severity::Medium, "Exfiltration", "Attempted communication with suspicious sinkholed domain", Traits::NONE),
    entry("AzureDNS_PhishingDomain", Service::Dns, Severity::Informational, "Exfiltration", "Communication with possible phishing domain", Traits::NONE),
    entry("AzureDNS_DomainGenerationAlgorithm", Service::Dns, Severity::Informational, "Exfiltration", "Communication with suspicious algorithmically generated domain", Traits::NONE),
    entry("AzureDNS_ThreatIntelSuspectDomain", Service::Dns, Severity::Medium, "Initial Access", "Communication with suspicious domain identified by threat intelligence", Traits::NONE),
    entry("AzureDNS_RandomizedDomain", Service::Dns, Severity::Informational, "Exfiltration", "Communication with suspicious random domain name", Traits::NONE),
    entry("AzureDNS_CurrencyMining", Service::Dns, Severity::Low, "Exfiltration", "Digital currency mining activity", Traits::NONE),
    entry("AzureDNS_SuspiciousDomain", Service::Dns, Severity::Medium, "Exfiltration", "Network intrusion detection signature activation", Traits::NONE),
    entry("AzureDNS_DataInfiltration", Service::Dns, Severity::Low, "Exfiltration", "Possible data download via DNS tunnel", Traits::NONE),
    entry("AzureDNS_DataExfiltration", Service::Dns, Severity::Low, "Exfiltration", "Possible data exfiltration via DNS tunnel", Traits::NONE),
    entry("AzureDNS_DataObfuscation", Service::Dns, Severity::Low, "Exfiltration", "Possible data transfer via DNS tunnel", Traits::NONE),
    entry("ARM_OperationFromSuspiciousIP", Service::ResourceManager, Severity::Medium, "Execution", "Azure Resource Manager operation from suspicious IP address", Traits::NONE),
    entry("ARM_OperationFromSuspiciousProxyIP", Service::ResourceManager, Severity::Medium, "Defense Evasion", "Azure Resource Manager operation from suspicious proxy IP address", Traits::NONE),
    entry("ARM_MicroBurst.AzDomainInfo", Service::ResourceManager, Severity::Low, "-", "MicroBurst exploitation toolkit used to enumerate resources in your subscriptions", Traits::NONE),
    entry("ARM_MicroBurst.AzureDomainInfo", Service::ResourceManager, Severity::Low, "-", "MicroBurst exploitation toolkit used to enumerate resources in your subscriptions", Traits::NONE),
    entry("ARM_MicroBurst.AzVMBulkCMD", Service::ResourceManager, Severity::High, "Execution", "MicroBurst exploitation toolkit used to execute code on your virtual machine", Traits::VM_COMPROMISE),
    entry("RM_MicroBurst.AzureRmVMBulkCMD", Service::ResourceManager, Severity::High, "-", "MicroBurst exploitation toolkit used to execute code on your virtual machine", Traits::VM_COMPROMISE),
    entry("ARM_MicroBurst.AzKeyVaultKeysREST", Service::ResourceManager, Severity::High, "-", "MicroBurst exploitation toolkit used to extract keys from your Azure key vaults", Traits::KEY_VAULT_DUMP),
    entry("ARM_MicroBurst.AZStorageKeysREST", Service::ResourceManager, Severity::High, "Collection", "MicroBurst exploitation toolkit used to extract keys to your storage accounts", Traits::STORAGE_KEYS),
    entry("ARM_MicroBurst.AzKeyVaultSecretsREST", Service::ResourceManager, Severity::High, "-", "MicroBurst exploitation toolkit used to extract secrets from your Azure key vaults", Traits::KEY_VAULT_DUMP),
    entry("ARM_PowerZure.AzureElevatedPrivileges", Service::ResourceManager, Severity::High, "-", "PowerZure exploitation toolkit used to elevate access from Azure AD to Azure", Traits::ROLE_CHANGE),
    entry("ARM_PowerZure.GetAzureTargets", Service::ResourceManager, Severity::High, "Collection", "PowerZure exploitation toolkit used to enumerate resources", Traits::NONE),
    entry("ARM_PowerZure.ShowStorageContent", Service::ResourceManager, Severity::High, "-", "PowerZure exploitation toolkit used to enumerate storage containers, shares, and tables", Traits::NONE),
    entry("ARM_PowerZure.StartRunbook", Service::ResourceManager, Severity::High, "-", "PowerZure exploitation toolkit used to execute a Runbook in your subscription", Traits::AUTOMATION),
    entry("ARM_PowerZure.AzureRunbookContent", Service::ResourceManager, Severity::High, "Collection", "PowerZure exploitation toolkit used to extract Runbooks content", Traits::AUTOMATION),
    entry("ARM_Azurite", Service::ResourceManager, Severity::High, "Collection", "PREVIEW - Azurite toolkit run detected", Traits::NONE),
    entry("ARM_SuspiciousComputeCreation", Service::ResourceManager, Severity::Medium, "Impact", "PREVIEW - Suspicious creation of compute resources detected", Traits::VM_COMPROMISE),
    entry("Arm_Suspicious_Vault_Recovering", Service::ResourceManager, Severity::Medium, "Lateral movement", "PREVIEW - Suspicious key vault recovery detected", Traits::KEY_VAULT_DUMP),
    entry("ARM_UnusedAccountPersistence", Service::ResourceManager, Severity::Medium, "Persistence", "PREVIEW - Suspicious management session using an inactive account detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.CredentialAccess", Service::ResourceManager, Severity::Medium, "Credential access", "PREVIEW - Suspicious invocation of a high-risk 'Credential Access' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.Collection", Service::ResourceManager, Severity::Medium, "Collection", "PREVIEW - Suspicious invocation of a high-risk 'Data Collection' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.DefenseEvasion", Service::ResourceManager, Severity::Medium, "Defense Evasion", "PREVIEW - Suspicious invocation of a high-risk 'Defense Evasion' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.Execution", Service::ResourceManager, Severity::Medium, "Defense Execution (sic; doc typo for Execution)", "PREVIEW - Suspicious invocation of a high-risk 'Execution' operation by a service principal detected", Traits::VM_COMPROMISE),
    entry("ARM_AnomalousServiceOperation.Impact", Service::ResourceManager, Severity::Medium, "Impact", "PREVIEW - Suspicious invocation of a high-risk 'Impact' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.InitialAccess", Service::ResourceManager, Severity::Medium, "Initial access", "PREVIEW - Suspicious invocation of a high-risk 'Initial Access' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.LateralMovement", Service::ResourceManager, Severity::Medium, "Lateral movement", "PREVIEW - Suspicious invocation of a high-risk 'Lateral Movement Access' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.Persistence", Service::ResourceManager, Severity::Medium, "Persistence", "PREVIEW - Suspicious invocation of a high-risk 'persistence' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.PrivilegeEscalation", Service::ResourceManager, Severity::Medium, "Privilege escalation", "PREVIEW - Suspicious invocation of a high-risk 'Privilege Escalation' operation by a service principal detected", Traits::ROLE_CHANGE),
    entry("ARM_UnusedAppPowershellPersistence", Service::ResourceManager, Severity::Medium, "Persistence", "PREVIEW - Suspicious management session using PowerShell detected", Traits::NONE),
    entry("ARM_UnusedAppIbizaPersistence", Service::ResourceManager, Severity::Medium, "Persistence", "PREVIEW - Suspicious management session using Azure portal detected", Traits::NONE),
    entry("ARM_PrivilegedRoleDefinitionCreation", Service::ResourceManager, Severity::Informational, "Privilege Escalation, Defense Evasion", "Privileged custom role created for your subscription in a suspicious way (Preview)", Traits::ROLE_CHANGE),
    entry("ARM_AnomalousRBACRoleAssignment", Service::ResourceManager, Severity::Low, "Lateral Movement, Defense Evasion", "Suspicious Azure role assignment detected (Preview)", Traits::ROLE_CHANGE),
    entry("ARM_AnomalousOperation.CredentialAccess", Service::ResourceManager, Severity::Medium, "Credential Access", "Suspicious invocation of a high-risk 'Credential Access' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.Collection", Service::ResourceManager, Severity::Medium, "Collection", "Suspicious invocation of a high-risk 'Data Collection' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.DefenseEvasion", Service::ResourceManager, Severity::Medium, "Defense Evasion", "Suspicious invocation of a high-risk 'Defense Evasion' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.Execution", Service::ResourceManager, Severity::Medium, "Execution", "Suspicious invocation of a high-risk 'Execution' operation detected (Preview)", Traits::VM_COMPROMISE),
    entry("ARM_AnomalousOperation.Impact", Service::ResourceManager, Severity::Medium, "Impact", "Suspicious invocation of a high-risk 'Impact' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.InitialAccess", Service::ResourceManager, Severity::Medium, "Initial Access", "Suspicious invocation of a high-risk 'Initial Access' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.LateralMovement", Service::ResourceManager, Severity::Medium, "Lateral Movement", "Suspicious invocation of a high-risk 'Lateral Movement' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousElevateAccess", Service::ResourceManager, Severity::Medium, "Privilege Escalation", "Suspicious elevate access operation (Preview)", Traits::ROLE_CHANGE),
    entry("ARM_AnomalousOperation.Persistence", Service::ResourceManager, Severity::Medium, "Persistence", "Suspicious invocation of a high-risk 'Persistence' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.PrivilegeEscalation", Service::ResourceManager, Severity::Medium, "Privilege Escalation", "Suspicious invocation of a high-risk 'Privilege Escalation' operation detected (Preview)", Traits::ROLE_CHANGE),
    entry("ARM_MicroBurst.RunCodeOnBehalf", Service::ResourceManager, Severity::High, "Persistence, Credential Access", "Usage of MicroBurst exploitation toolkit to run an arbitrary code or exfiltrate Azure Automation account credentials", Traits::AUTOMATION),
    entry("ARM_NetSPI.MaintainPersistence", Service::ResourceManager, Severity::High, "-", "Usage of NetSPI techniques to maintain persistence in your Azure environment", Traits::AUTOMATION),
    entry("ARM_PowerZure.RunCodeOnBehalf", Service::ResourceManager, Severity::High, "-", "Usage of PowerZure exploitation toolkit to run an arbitrary code or exfiltrate Azure Automation account credentials", Traits::AUTOMATION),
    entry("ARM_PowerZure.MaintainPersistence", Service::ResourceManager, Severity::High, "-", "Usage of PowerZure function to maintain persistence in your Azure environment", Traits::AUTOMATION),
    entry("ARM_AnomalousClassicRoleAssignment", Service::ResourceManager, Severity::High, "Lateral Movement, Defense Evasion", "Suspicious classic role assignment detected (Preview)", Traits::ROLE_CHANGE),
];

static BY_LOWERCASE_TYPE: LazyLock<HashMap<String, &'static CatalogEntry>> = LazyLock::new(|| {
    CATALOG
        .iter()
        .map(|entry| (entry.alert_type.to_ascii_lowercase(), entry))
        .collect()
});

/// Looks up an alert type (without the `SIMULATED_` prefix), case-insensitively.
pub fn lookup(alert_type: &str) -> Option<&'static CatalogEntry> {
    BY_LOWERCASE_TYPE
        .get(&alert_type.trim().to_ascii_lowercase())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_holds_all_73_documented_types_once() {
        assert_eq!(CATALOG.len(), 73);
        assert_eq!(BY_LOWERCASE_TYPE.len(), 73);
        let count = |service| CATALOG.iter().filter(|e| e.service == service).count();
        assert_eq!(count(Service::KeyVault), 14);
        assert_eq!(count(Service::Dns), 13);
        assert_eq!(count(Service::ResourceManager), 46);
    }

    #[test]
    fn odd_prefixes_route_by_table_not_by_prefix() {
        assert_eq!(
            lookup("RM_MicroBurst.AzureRmVMBulkCMD").unwrap().service,
            Service::ResourceManager
        );
        assert_eq!(
            lookup("Arm_Suspicious_Vault_Recovering").unwrap().service,
            Service::ResourceManager
        );
        assert_eq!(
            lookup("arm_suspicious_vault_recovering").unwrap().service,
            Service::ResourceManager
        );
        assert!(lookup("KV_FutureDetectionV2").is_none());
        assert!(lookup("VM_EICAR").is_none());
        assert!(lookup("ARM_AnomalousElevateAccess").is_some());
    }
}
