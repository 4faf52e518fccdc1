//! Pure domain types: alerts, the alert catalogue, tasks and plans. No I/O, no async, no JSON values.

pub mod alert;
pub mod catalog;
pub mod plan;
pub mod task;

pub use alert::{
    AlertStatus, AzureResourceId, Entity, SecurityAlert, Service, Severity, SIMULATED_PREFIX,
};
pub use plan::ResponsePlan;
pub use task::{Action, AlertRef, MessageId, Queue, Task, TaskStatus, PLAYBOOK_STEPS};
