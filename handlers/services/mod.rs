//! Per-service handlers (alert in, plan out) and the registry that routes alerts to them.

mod dns;
pub mod facts;
mod fallback;
mod key_vault;
mod resource_manager;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

use crate::domain::catalog::CatalogEntry;
use crate::domain::parameters::OwnerLookup;
use crate::domain::{
    AlertRef, AzureResourceId, PlaybookSteps, ResponsePlan, SecurityAlert, ServiceName,
};
use crate::policy::Policy;

pub use dns::Dns;
pub use facts::MAX_VAULT_OBJECTS_PER_ALERT;
pub use fallback::Fallback;
pub use key_vault::KeyVault;
pub use resource_manager::ResourceManager;

/// Everything a handler may read to plan: the alert, what the catalogue says of its type,
/// and the policy. Handlers are pure: no I/O, so plans are tested without a network.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// The alert.
    pub alert: &'a SecurityAlert,
    /// The catalogue entry of its type (`None` for undocumented types).
    pub entry: Option<&'static CatalogEntry>,
    /// The policy.
    pub policy: &'a Policy,
    /// The summary every task carries.
    pub alert_ref: &'a AlertRef,
}

/// Turns an alert of one Defender plan into a response plan, and says what it owns: its rows
/// of the alert catalogue, the playbook steps its tasks cite and the step of its contact.
///
/// Adding a service is three files: its handler file (its name, these items and its catalogue
/// rows), its section of `docs/playbooks.md` and a fixture under `tests/fixtures/alerts`; and
/// one registration point: its `mod` line here and its `.register(...)` line in
/// [`Registry::standard`]. The playbook's step list, policy validation, the task schema and
/// the coverage tests all read the registry; `services::tests::registry_*` and
/// `tests/playbook_coverage.rs` fail naming whatever is missing.
pub trait ServiceHandler: Send + Sync {
    /// The name of the service this handler owns (declared beside the handler, e.g.
    /// `KeyVault::NAME`); unique in a registry.
    fn service(&self) -> ServiceName;
    /// The documented alert types it handles (routing reads nothing else).
    fn catalog(&self) -> &'static [CatalogEntry];
    /// Every playbook step id its tasks may cite.
    fn steps(&self) -> &'static [&'static str];
    /// The step of its first contact: cited by status-change notices about its alerts.
    fn contact_step(&self) -> &'static str;
    /// Builds the plan. Pure and deterministic; the policy's automation rules are applied
    /// afterwards by [`Policy::finalize`], not here.
    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan;
}

/// Where an alert goes: the service, its catalogue row, and the handler that plans it.
#[derive(Clone, Copy)]
pub struct Route<'r> {
    /// The service (the fallback's `unknown` for types no handler owns).
    pub service: ServiceName,
    /// The catalogue row (`None` for undocumented types).
    pub entry: Option<&'static CatalogEntry>,
    handler: &'r dyn ServiceHandler,
    fallback: &'r Fallback,
}

impl Route<'_> {
    /// The step a status-change notice about this alert cites.
    pub fn contact_step(&self) -> &'static str {
        self.handler.contact_step()
    }

    /// Plans the response (before the policy's automation rules). Containment without an
    /// exact target becomes checklist items; a handler that finds nothing to do still tells
    /// the security team, so nothing is dropped silently.
    pub fn plan(&self, alert: &SecurityAlert, policy: &Policy) -> ResponsePlan {
        let alert_ref = AlertRef::new(alert, self.service);
        let input = PlanInput {
            alert,
            entry: self.entry,
            policy,
            alert_ref: &alert_ref,
        };
        let mut plan = self.handler.plan(&input);
        if plan.is_empty() {
            let mut fallback = self.fallback.plan(&input);
            fallback.absorb_notes(plan);
            plan = fallback;
        }
        plan.attach_manual_items();
        plan
    }
}

/// The per-service handlers, and the catalogue they declare, indexed by alert type.
pub struct Registry {
    handlers: Vec<Box<dyn ServiceHandler>>,
    by_type: HashMap<String, (usize, &'static CatalogEntry)>,
    fallback: Fallback,
}

impl Registry {
    /// An empty registry (every alert gets the notification-only fallback plan).
    pub fn empty() -> Self {
        Registry {
            handlers: Vec::new(),
            by_type: HashMap::new(),
            fallback: Fallback,
        }
    }

    /// Adds a handler and its catalogue rows. One line per service in [`Registry::standard`].
    ///
    /// # Panics
    /// When the service's name is already registered (or is the fallback's), an alert type
    /// is already owned by another handler, or a row names another service: a registry that
    /// routes one type two ways must never start.
    pub fn register(mut self, handler: impl ServiceHandler + 'static) -> Self {
        let name = handler.service();
        assert!(
            self.services().all(|registered| registered != name),
            "the {name} service is registered twice (or is the fallback's name)"
        );
        let index = self.handlers.len();
        for entry in handler.catalog() {
            assert_eq!(
                entry.service,
                handler.service(),
                "catalogue row {} of the {} handler names the {} service",
                entry.alert_type,
                handler.service(),
                entry.service
            );
            let key = entry.alert_type.to_ascii_lowercase();
            if let Some((other, _)) = self.by_type.insert(key, (index, entry)) {
                panic!(
                    "alert type {} is claimed by both the {} and the {} handler",
                    entry.alert_type,
                    self.handlers[other].service(),
                    handler.service()
                );
            }
        }
        self.handlers.push(Box::new(handler));
        self
    }

    /// The standard handlers: the one registration point of a service (with its `mod` line).
    pub fn standard() -> Self {
        Self::empty()
            .register(KeyVault)
            .register(Dns)
            .register(ResourceManager)
    }

    /// The registered handlers, in registration order.
    pub fn handlers(&self) -> impl Iterator<Item = &dyn ServiceHandler> {
        self.handlers.iter().map(|handler| handler.as_ref())
    }

    /// The fallback that plans alerts no handler owns (GEN-1).
    pub fn fallback(&self) -> &dyn ServiceHandler {
        &self.fallback
    }

    /// The names of the registered services, in registration order, then the fallback's.
    pub fn services(&self) -> impl Iterator<Item = ServiceName> + '_ {
        self.handlers()
            .chain([self.fallback()])
            .map(|handler| handler.service())
    }

    /// The playbook's step ids: every step the registered handlers' tasks may cite, then the
    /// fallback's GEN-1. Policy rules are validated against these (and their headings).
    pub fn steps(&self) -> PlaybookSteps {
        PlaybookSteps::new(
            self.handlers()
                .chain([self.fallback()])
                .flat_map(|handler| handler.steps().iter().copied()),
        )
    }

    /// Every documented alert type the registry routes.
    pub fn catalog(&self) -> impl Iterator<Item = &'static CatalogEntry> + '_ {
        self.handlers
            .iter()
            .flat_map(|handler| handler.catalog().iter())
    }

    /// Routes an alert once: by its exact type (simulator prefix removed, case-insensitive).
    pub fn route(&self, alert: &SecurityAlert) -> Route<'_> {
        let key = alert.base_alert_type().trim().to_ascii_lowercase();
        match self.by_type.get(&key) {
            Some(&(index, entry)) => Route {
                service: self.handlers[index].service(),
                entry: Some(entry),
                handler: self.handlers[index].as_ref(),
                fallback: &self.fallback,
            },
            None => Route {
                service: self.fallback.service(),
                entry: None,
                handler: &self.fallback,
                fallback: &self.fallback,
            },
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::standard()
    }
}

/// The service names of the standard registry, the ones a task message may name.
static STANDARD_SERVICES: LazyLock<Vec<ServiceName>> =
    LazyLock::new(|| Registry::standard().services().collect());

/// A task message's service is read against the standard registry: a name no registered
/// handler declares is refused, as the schema says.
impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        STANDARD_SERVICES
            .iter()
            .copied()
            .find(|name| name.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = STANDARD_SERVICES.iter().map(|name| name.as_str()).collect();
                serde::de::Error::custom(format!(
                    "{text:?} is not a registered service (one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// The schema of a service name: one of the standard registry's names.
impl JsonSchema for ServiceName {
    fn schema_name() -> Cow<'static, str> {
        "Service".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = STANDARD_SERVICES.iter().map(|name| name.as_str()).collect();
        schemars::json_schema!({
            "description": "The Defender plan (and so the per-service handler) an alert belongs to; `unknown`: not one of the documented types, handled by the notification-only fallback.",
            "type": "string",
            "enum": names,
        })
    }
}

/// The people to notify about a resource: its owner (when the policy can name one) and the
/// security team.
pub(crate) fn notify_targets(policy: &Policy, resource: Option<&AzureResourceId>) -> Vec<String> {
    policy.recipients_for(resource)
}

/// Where the notification worker reads the resource's owner by tag (an ARM read the pure
/// handlers cannot do).
pub(crate) fn owner_lookup(
    policy: &Policy,
    resource: Option<&AzureResourceId>,
) -> Option<OwnerLookup> {
    resource.map(|resource| OwnerLookup {
        tag: policy.owner_tag.clone(),
        resource: resource.clone(),
    })
}

#[cfg(test)]
mod tests;
