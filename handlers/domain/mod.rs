//! Pure domain types: alerts, the alert catalogue, tasks and plans. No I/O, no async, no JSON values.

pub mod alert;
pub mod catalog;
pub mod ids;
pub mod parameters;
pub mod plan;
pub mod steps;
pub mod task;

pub use alert::{
    AlertStatus, AzureResourceId, Entity, SecurityAlert, ServiceName, Severity, SIMULATED_PREFIX,
};
pub use ids::{
    CertificateUri, Guid, IdError, IpAddress, IpRange, KeyUri, KeyVaultId, PersonAddress,
    PrincipalKind, PrincipalRef, SecretUri, SubscriptionScope, VaultObjectKind, VaultObjectUri,
};
pub use parameters::{Activity, Parameters, Subject, TimeWindow};
pub use plan::ResponsePlan;
pub use steps::PlaybookSteps;
pub use task::{task_json_schema, PolicyDecision, SCHEMA_VERSION};
pub use task::{Action, AlertRef, MessageId, Queue, Task, TaskStatus};
