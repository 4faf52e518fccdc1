//! Defender for DNS alerts → playbook steps DNS-1 … DNS-2d.

use super::facts;
use super::{owner_lookup, PlanInput, ServiceHandler};
use crate::domain::catalog::{entry, CatalogEntry, Traits};
use crate::domain::parameters::{ResourceTarget, ScanType};
use crate::domain::{
    Action, Activity, AzureResourceId, Entity, Parameters, ResponsePlan, SecurityAlert,
    ServiceName, Severity, Subject, Task,
};

/// The DNS handler.
pub struct Dns;

impl Dns {
    /// The name tasks, reports and message properties carry for DNS alerts.
    pub const NAME: ServiceName = ServiceName::new("dns");
}

/// The documented alert types this handler owns (alert-catalog.md).
#[rustfmt::skip]
pub(crate) const CATALOG: &[CatalogEntry] = &[
    entry("AzureDNS_ProtocolAnomaly", Dns::NAME, Severity::Unknown, "Exfiltration", "Anomalous network protocol usage", Traits::NONE),
    entry("AzureDNS_DarkWeb", Dns::NAME, Severity::Low, "Exfiltration", "Anonymity network activity", Traits::NONE),
    entry("AzureDNS_DarkWebProxy", Dns::NAME, Severity::Low, "Exfiltration", "Anonymity network activity using web proxy", Traits::NONE),
    entry("AzureDNS_SinkholedDomain", Dns::NAME, Severity::Medium, "Exfiltration", "Attempted communication with suspicious sinkholed domain", Traits::NONE),
    entry("AzureDNS_PhishingDomain", Dns::NAME, Severity::Informational, "Exfiltration", "Communication with possible phishing domain", Traits::NONE),
    entry("AzureDNS_DomainGenerationAlgorithm", Dns::NAME, Severity::Informational, "Exfiltration", "Communication with suspicious algorithmically generated domain", Traits::NONE),
    entry("AzureDNS_ThreatIntelSuspectDomain", Dns::NAME, Severity::Medium, "Initial Access", "Communication with suspicious domain identified by threat intelligence", Traits::NONE),
    entry("AzureDNS_RandomizedDomain", Dns::NAME, Severity::Informational, "Exfiltration", "Communication with suspicious random domain name", Traits::NONE),
    entry("AzureDNS_CurrencyMining", Dns::NAME, Severity::Low, "Exfiltration", "Digital currency mining activity", Traits::NONE),
    entry("AzureDNS_SuspiciousDomain", Dns::NAME, Severity::Medium, "Exfiltration", "Network intrusion detection signature activation", Traits::NONE),
    entry("AzureDNS_DataInfiltration", Dns::NAME, Severity::Low, "Exfiltration", "Possible data download via DNS tunnel", Traits::NONE),
    entry("AzureDNS_DataExfiltration", Dns::NAME, Severity::Low, "Exfiltration", "Possible data exfiltration via DNS tunnel", Traits::NONE),
    entry("AzureDNS_DataObfuscation", Dns::NAME, Severity::Low, "Exfiltration", "Possible data transfer via DNS tunnel", Traits::NONE),
];

/// The facts the DNS steps need.
struct DnsFacts {
    resource: Option<AzureResourceId>,
    resource_label: String,
    host_name: Option<String>,
    domains: Vec<String>,
    answers: Vec<String>,
    source_ips: Vec<String>,
    is_machine: bool,
}

/// Resource types an antimalware scan and a reimage can run on.
const MACHINE_TYPES: &[&str] = &[
    "Microsoft.Compute/virtualMachines",
    "Microsoft.Compute/virtualMachineScaleSets",
    "Microsoft.HybridCompute/machines",
    "Microsoft.ClassicCompute/virtualMachines",
];

impl DnsFacts {
    fn from(alert: &SecurityAlert) -> Self {
        let ids = facts::resource_ids(alert);
        let host = alert.entities.iter().find_map(|entity| match entity {
            Entity::Host {
                host_name,
                azure_id,
                ..
            } => Some((host_name.clone(), azure_id.clone())),
            _ => None,
        });
        let (host_name, host_id) = host.unwrap_or_default();
        // The alerting resource: the host entity's id, else the alert's resource, else any
        // machine id the alert mentions.
        let resource = host_id
            .or_else(|| alert.resource_id.clone())
            .or_else(|| {
                ids.iter()
                    .find(|id| MACHINE_TYPES.iter().any(|kind| id.is_type(kind)))
                    .cloned()
            })
            .or_else(|| ids.first().cloned());
        let mut domains: Vec<String> = Vec::new();
        let mut answers: Vec<String> = Vec::new();
        let mut source_ips: Vec<String> = Vec::new();
        let add = |list: &mut Vec<String>, value: &str| {
            let value = value.trim();
            if !value.is_empty() && !list.iter().any(|have| have == value) {
                list.push(value.to_string());
            }
        };
        for entity in &alert.entities {
            if let Entity::Dns {
                domain_name,
                ip_addresses,
                host_ip_address,
            } = entity
            {
                add(&mut domains, domain_name);
                for answer in ip_addresses {
                    add(&mut answers, answer);
                }
                if let Some(ip) = host_ip_address {
                    add(&mut source_ips, ip);
                }
            }
        }
        if let Some(domain) = alert.extended("domainName") {
            for item in facts::split_list(domain) {
                add(&mut domains, &item);
            }
        }
        if let Some(text) = alert.extended("answers") {
            for item in facts::split_list(text) {
                add(&mut answers, &item);
            }
        }
        // Any other address in the alert that is not an answer is the asking side.
        for ip in facts::ips(alert, &[]) {
            if !answers.contains(&ip) {
                add(&mut source_ips, &ip);
            }
        }
        let is_machine = resource
            .as_ref()
            .map(|id| MACHINE_TYPES.iter().any(|kind| id.is_type(kind)))
            .unwrap_or(host_name.is_some());
        let resource_label = resource
            .as_ref()
            .map(|id| id.as_str().to_string())
            .or_else(|| host_name.clone())
            .unwrap_or_else(|| alert.resource_label());
        DnsFacts {
            resource,
            resource_label,
            host_name,
            domains,
            answers,
            source_ips,
            is_machine,
        }
    }

    fn domains_text(&self) -> String {
        if self.domains.is_empty() {
            "a domain the alert does not name".to_string()
        } else {
            self.domains.join(", ")
        }
    }

    fn activity(&self) -> Activity {
        Activity {
            caller_ips: facts::typed_ips(&self.source_ips),
            ..Activity::default()
        }
    }

    fn facts(&self, task: Task) -> Task {
        task.activity(self.activity())
            .fact("resource", self.resource_label.clone())
            .fact("host_name", self.host_name.clone().unwrap_or_default())
            .fact("queried_domains", self.domains.join(", "))
            .fact("answers", self.answers.join(", "))
            .fact("source_ips", self.source_ips.join(", "))
    }
}

impl ServiceHandler for Dns {
    fn service(&self) -> ServiceName {
        Dns::NAME
    }

    fn catalog(&self) -> &'static [CatalogEntry] {
        CATALOG
    }

    fn steps(&self) -> &'static [&'static str] {
        &["DNS-1", "DNS-2", "DNS-2a", "DNS-2b", "DNS-2c", "DNS-2d"]
    }

    fn contact_step(&self) -> &'static str {
        "DNS-1"
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let f = DnsFacts::from(alert);
        let resource = f.resource_label.clone();
        let domains = f.domains_text();
        let what = alert
            .display_name
            .clone()
            .unwrap_or_else(|| alert.alert_type.clone());
        let mut plan = ResponsePlan::new();

        // DNS-1 with the manual DNS-2 steps as the owner's checklist.
        let mut checklist = vec![
            "DNS-1: if the lookups were expected or intentional, dismiss the alert in Defender for Cloud and reject the pending containment tasks.".to_string(),
            "DNS-1: if not, treat the resource as possibly compromised: containment (DNS-2) follows.".to_string(),
            format!("DNS-2b: review the software installed and running on {resource}; remove unknown or unwanted packages."),
            format!("DNS-2c: return {resource} to a known good state: reinstall the operating system if needed and restore software from sources verified to be malware-free."),
            format!("DNS-2d: resolve every Defender for Cloud recommendation for {resource}."),
        ];
        if !f.is_machine {
            checklist.push(format!(
                "DNS-2a: {resource} is not a virtual machine: run the antimalware scan that fits its kind and follow its remediation advice."
            ));
        }
        let mut steps = vec!["DNS-1", "DNS-2b", "DNS-2c", "DNS-2d"];
        if !f.is_machine {
            steps.insert(1, "DNS-2a");
        }
        let contact = Task::new(
            input.alert_ref,
            Parameters::ContactOwner {
                subject: Subject::from_label(&resource),
                owner_lookup: owner_lookup(input.policy, f.resource.as_ref()),
            },
            &steps,
            format!(
                "DNS-1: {resource} looked up {domains} ({what}); ask its owner whether this was expected or intentional."
            ),
        )
        .checklist(checklist)
        .recipients(input.policy.recipients_for(f.resource.as_ref()));
        plan.push(f.facts(contact));

        // DNS-2: isolate, then DNS-2a: scan.
        let reason = format!(
            "DNS-2: if the lookups of {domains} were not expected, isolate {resource} from the network to prevent lateral movement."
        );
        match &f.resource {
            Some(id) => plan.push(
                Task::new(
                    input.alert_ref,
                    Parameters::IsolateResourceNetwork {
                        resource: id.clone(),
                    },
                    &["DNS-2"],
                    reason,
                )
                .activity(f.activity()),
            ),
            None => plan.push_manual(&["DNS-2"], Action::IsolateResourceNetwork, reason),
        }
        if f.is_machine {
            let reason = format!(
                "DNS-2a: run a full antimalware scan on {resource}, which looked up {domains}, and follow the resulting remediation advice."
            );
            match &f.resource {
                Some(id) => plan.push(
                    Task::new(
                        input.alert_ref,
                        Parameters::RunAntimalwareScan {
                            target: ResourceTarget::Resource {
                                resource: id.clone(),
                            },
                            scan_type: ScanType::Full,
                        },
                        &["DNS-2a"],
                        reason,
                    )
                    .activity(f.activity()),
                ),
                None => plan.push_manual(&["DNS-2a"], Action::RunAntimalwareScan, reason),
            }
        }
        plan
    }
}
