//! App settings of the Azure clients (endpoints, scopes, budgets) and of the isolation guard
//! rails (the responder's own egress, excluded principals, the blast-radius budget).

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::Setting;
use crate::azure::budget::BucketLimit;
use crate::azure::http::HttpPolicy;
use crate::domain::ids::{AzureResourceId, Guid};
use crate::error::Error;

/// Resource Manager endpoint.
pub const ARM_ENDPOINT: &str = "RESPONDER_ARM_ENDPOINT";
/// Resource Manager token scope.
pub const ARM_SCOPE: &str = "RESPONDER_ARM_SCOPE";
/// Microsoft Graph endpoint (with its version).
pub const GRAPH_ENDPOINT: &str = "RESPONDER_GRAPH_ENDPOINT";
/// Microsoft Graph token scope.
pub const GRAPH_SCOPE: &str = "RESPONDER_GRAPH_SCOPE";
/// Defender for Endpoint API endpoint.
pub const MDE_ENDPOINT: &str = "RESPONDER_MDE_ENDPOINT";
/// Defender for Endpoint token scope.
pub const MDE_SCOPE: &str = "RESPONDER_MDE_SCOPE";
/// Extra root certificate (PEM file) trusted by the Azure clients.
pub const EXTRA_ROOT_CERTIFICATE: &str = "RESPONDER_AZURE_EXTRA_ROOT_CERTIFICATE";
/// ARM writes per second per subscription.
pub const ARM_WRITES_PER_SECOND: &str = "RESPONDER_ARM_WRITES_PER_SECOND";
/// ARM write burst per subscription.
pub const ARM_WRITE_BURST: &str = "RESPONDER_ARM_WRITE_BURST";
/// Bound on one long-running operation.
pub const LRO_DEADLINE_SECONDS: &str = "RESPONDER_LRO_DEADLINE_SECONDS";
/// The responder's own egress ranges.
pub const EGRESS_IP_RANGES: &str = "RESPONDER_EGRESS_IP_RANGES";
/// The responder's own subnets.
pub const EGRESS_SUBNETS: &str = "RESPONDER_EGRESS_SUBNETS";
/// Source allowed into quarantined machines for forensics.
pub const FORENSICS_SOURCE: &str = "RESPONDER_FORENSICS_SOURCE";
/// Prefer Defender for Endpoint isolation over a quarantine NSG.
pub const PREFER_MDE_ISOLATION: &str = "RESPONDER_PREFER_MDE_ISOLATION";
/// Principals never acted on.
pub const EXCLUDED_PRINCIPALS: &str = "RESPONDER_EXCLUDED_PRINCIPALS";
/// Containment changes allowed per subscription per hour.
pub const BLAST_RADIUS_PER_HOUR: &str = "RESPONDER_BLAST_RADIUS_PER_HOUR";

/// The settings of this module, for documentation and the drift tests.
pub const SETTINGS: &[Setting] = &[
    Setting { name: ARM_ENDPOINT, default: "https://management.azure.com", description: "Azure Resource Manager endpoint." },
    Setting { name: ARM_SCOPE, default: "https://management.azure.com/.default", description: "Token scope for Resource Manager." },
    Setting { name: GRAPH_ENDPOINT, default: "https://graph.microsoft.com/v1.0", description: "Microsoft Graph endpoint, with its version." },
    Setting { name: GRAPH_SCOPE, default: "https://graph.microsoft.com/.default", description: "Token scope for Microsoft Graph." },
    Setting { name: MDE_ENDPOINT, default: "https://api.security.microsoft.com/api", description: "Defender for Endpoint API endpoint (regional hosts such as https://eu.api.security.microsoft.com/api work too)." },
    Setting { name: MDE_SCOPE, default: "https://api.securitycenter.microsoft.com/.default", description: "Token scope for Defender for Endpoint." },
    Setting { name: EXTRA_ROOT_CERTIFICATE, default: "", description: "Path of a PEM certificate the Azure clients trust besides the public roots (a TLS-inspecting proxy, a local simulator)." },
    Setting { name: ARM_WRITES_PER_SECOND, default: "10", description: "ARM writes (and deletes) per second per subscription the responder allows itself; ARM's own bucket refills 10 per second." },
    Setting { name: ARM_WRITE_BURST, default: "200", description: "ARM writes in a burst per subscription (ARM's bucket holds 200)." },
    Setting { name: LRO_DEADLINE_SECONDS, default: "120", description: "Bound on waiting for one long-running Azure operation, in seconds; beyond it the task is retried later." },
    Setting { name: EGRESS_IP_RANGES, default: "", description: "Comma-separated CIDR ranges of the responder's own outbound addresses; kept in a vault's firewall while rotations on that vault are pending." },
    Setting { name: EGRESS_SUBNETS, default: "", description: "Comma-separated subnet resource ids the responder runs in (VNet integration); kept in a vault's firewall while rotations on that vault are pending." },
    Setting { name: FORENSICS_SOURCE, default: "", description: "Address prefix (CIDR, or a service tag such as VirtualNetwork) allowed to reach a quarantined machine on 22 and 3389. Empty: nothing is allowed in." },
    Setting { name: PREFER_MDE_ISOLATION, default: "false", description: "true: isolate machines through Defender for Endpoint when they are onboarded, instead of a quarantine network security group." },
    Setting { name: EXCLUDED_PRINCIPALS, default: "", description: "Comma-separated Entra object ids the responder never disables, deletes or restricts (break-glass accounts)." },
    Setting { name: BLAST_RADIUS_PER_HOUR, default: "20", description: "Containment changes allowed per subscription per hour; beyond it the responder only notifies and says so." },
];

/// Where and how the Azure clients call.
#[derive(Clone, Debug, PartialEq)]
pub struct AzureSettings {
    /// ARM endpoint.
    pub arm_endpoint: String,
    /// ARM scope.
    pub arm_scope: String,
    /// Graph endpoint.
    pub graph_endpoint: String,
    /// Graph scope.
    pub graph_scope: String,
    /// MDE endpoint.
    pub mde_endpoint: String,
    /// MDE scope.
    pub mde_scope: String,
    /// An extra root certificate, PEM.
    pub extra_root_certificate: Option<PathBuf>,
    /// The ARM write and delete budget per subscription.
    pub arm_write_budget: BucketLimit,
    /// Timeouts, in-process retries and LRO polling.
    pub http: HttpPolicy,
}

impl Default for AzureSettings {
    fn default() -> Self {
        AzureSettings {
            arm_endpoint: "https://management.azure.com".into(),
            arm_scope: "https://management.azure.com/.default".into(),
            graph_endpoint: "https://graph.microsoft.com/v1.0".into(),
            graph_scope: "https://graph.microsoft.com/.default".into(),
            mde_endpoint: "https://api.security.microsoft.com/api".into(),
            mde_scope: "https://api.securitycenter.microsoft.com/.default".into(),
            extra_root_certificate: None,
            arm_write_budget: BucketLimit::ARM_WRITES,
            http: HttpPolicy::default(),
        }
    }
}

impl AzureSettings {
    /// Every endpoint on one base URL (a local simulator serving ARM at `/`, Graph at
    /// `/v1.0` and MDE at `/api`).
    pub fn on_one_host(base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        AzureSettings {
            arm_endpoint: base.to_string(),
            graph_endpoint: format!("{base}/v1.0"),
            mde_endpoint: format!("{base}/api"),
            ..AzureSettings::default()
        }
    }

    /// Reads the settings through `get` (trimmed, empty = unset).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let defaults = AzureSettings::default();
        let url = |name: &str, default: &str| -> Result<String, Error> {
            let value = get(name).unwrap_or_else(|| default.to_string());
            match url::Url::parse(&value) {
                Ok(parsed) if matches!(parsed.scheme(), "https" | "http") => {
                    Ok(value.trim_end_matches('/').to_string())
                }
                _ => Err(Error::Config(format!(
                    "{name}={value:?} is not an http(s) URL"
                ))),
            }
        };
        let number = |name: &str, default: f64| -> Result<f64, Error> {
            match get(name) {
                None => Ok(default),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n > 0.0)
                    .ok_or_else(|| {
                        Error::Config(format!("{name}={text:?} is not a positive number"))
                    }),
            }
        };
        let extra_root_certificate = get(EXTRA_ROOT_CERTIFICATE).map(PathBuf::from);
        if let Some(path) = &extra_root_certificate {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "{EXTRA_ROOT_CERTIFICATE}={:?} is not a readable file",
                    path.display()
                )));
            }
        }
        let http = HttpPolicy {
            lro_deadline: Duration::from_secs_f64(number(LRO_DEADLINE_SECONDS, 120.0)?),
            ..HttpPolicy::default()
        };
        Ok(AzureSettings {
            arm_endpoint: url(ARM_ENDPOINT, &defaults.arm_endpoint)?,
            arm_scope: get(ARM_SCOPE).unwrap_or(defaults.arm_scope),
            graph_endpoint: url(GRAPH_ENDPOINT, &defaults.graph_endpoint)?,
            graph_scope: get(GRAPH_SCOPE).unwrap_or(defaults.graph_scope),
            mde_endpoint: url(MDE_ENDPOINT, &defaults.mde_endpoint)?,
            mde_scope: get(MDE_SCOPE).unwrap_or(defaults.mde_scope),
            extra_root_certificate,
            arm_write_budget: BucketLimit {
                capacity: number(ARM_WRITE_BURST, 200.0)?,
                refill_per_second: number(ARM_WRITES_PER_SECOND, 10.0)?,
            },
            http,
        })
    }
}

/// The guard rails and inputs of the isolation executors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IsolationSettings {
    /// The responder's own egress ranges (kept in a vault firewall while rotations on it are pending).
    pub egress_ip_ranges: Vec<IpNet>,
    /// The responder's own subnets.
    pub egress_subnets: Vec<AzureResourceId>,
    /// Allowed into quarantined machines on 22/3389 (CIDR or service tag).
    pub forensics_source: Option<String>,
    /// Prefer MDE isolation over a quarantine NSG.
    pub prefer_mde_isolation: bool,
    /// The responder's own identities: never restricted, disabled or deleted.
    pub self_object_ids: Vec<Guid>,
    /// Principals the policy excludes from containment.
    pub excluded_principals: Vec<Guid>,
    /// Containment changes per subscription per hour.
    pub blast_radius_per_hour: u32,
}

impl IsolationSettings {
    /// Reads the settings through `get`; `self_object_ids` comes from the policy's own list.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        self_object_ids: &[String],
    ) -> Result<Self, Error> {
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|text| {
                    text.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let guids = |name: &str, values: Vec<String>| -> Result<Vec<Guid>, Error> {
            values
                .iter()
                .map(|v| Guid::parse(v).map_err(|err| Error::Config(format!("{name}: {err}"))))
                .collect()
        };
        let egress_ip_ranges = list(EGRESS_IP_RANGES)
            .iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        Error::Config(format!("{EGRESS_IP_RANGES}: {text:?} is not a CIDR range"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let egress_subnets = list(EGRESS_SUBNETS)
            .iter()
            .map(|text| {
                AzureResourceId::parse(text)
                    .ok()
                    .filter(|id| id.is_type("Microsoft.Network/virtualNetworks/subnets"))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{EGRESS_SUBNETS}: {text:?} is not a subnet resource id"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prefer_mde_isolation = match get(PREFER_MDE_ISOLATION).as_deref() {
            None => false,
            Some(text) if text.eq_ignore_ascii_case("true") => true,
            Some(text) if text.eq_ignore_ascii_case("false") => false,
            Some(text) => {
                return Err(Error::Config(format!(
                    "{PREFER_MDE_ISOLATION}={text:?} is not true or false"
                )))
            }
        };
        let blast_radius_per_hour = match get(BLAST_RADIUS_PER_HOUR) {
            None => 20,
            Some(text) => text.parse::<u32>().map_err(|_| {
                Error::Config(format!(
                    "{BLAST_RADIUS_PER_HOUR}={text:?} is not a whole number"
                ))
            })?,
        };
        Ok(IsolationSettings {
            egress_ip_ranges,
            egress_subnets,
            forensics_source: get(FORENSICS_SOURCE),
            prefer_mde_isolation,
            self_object_ids: guids("self object ids", self_object_ids.to_vec())?,
            excluded_principals: guids(EXCLUDED_PRINCIPALS, list(EXCLUDED_PRINCIPALS))?,
            blast_radius_per_hour,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_are_the_public_cloud() {
        let settings = AzureSettings::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(settings, AzureSettings::default());
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        let err = AzureSettings::from_lookup(&lookup(&[(ARM_ENDPOINT, "management")])).unwrap_err();
        assert!(err.to_string().contains(ARM_ENDPOINT), "{err}");
        let err =
            IsolationSettings::from_lookup(&lookup(&[(EGRESS_IP_RANGES, "10.0.0.0/33")]), &[])
                .unwrap_err();
        assert!(err.to_string().contains(EGRESS_IP_RANGES), "{err}");
        let err = IsolationSettings::from_lookup(&lookup(&[(EXCLUDED_PRINCIPALS, "bob")]), &[])
            .unwrap_err();
        assert!(err.to_string().contains(EXCLUDED_PRINCIPALS), "{err}");
    }

    #[test]
    fn isolation_settings_parse_lists() {
        let settings = IsolationSettings::from_lookup(
            &lookup(&[
                (EGRESS_IP_RANGES, "203.0.113.7, 198.51.100.0/24"),
                (BLAST_RADIUS_PER_HOUR, "3"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(settings.egress_ip_ranges.len(), 2);
        assert_eq!(settings.egress_ip_ranges[0].to_string(), "203.0.113.7/32");
        assert_eq!(settings.blast_radius_per_hour, 3);
    }
}
