//! Execution behind one trait: `preview -> apply -> verify -> undo`, one registration line per
//! action, and the context (clients, settings) every executor gets.
//!
//! The worker's sequence for a containment task:
//! 1. `preview` resolves the target, reads its state and computes the exact [`Change`]; a guard
//!    rail answers [`ExecutorError::Refused`]. A dry run stops here.
//! 2. The worker journals the preview (its `prior_state` first), takes a lease on each id of
//!    `Preview::leases`, checks [`guards::BlastRadius`] and [`guards::authenticate_alert`].
//! 3. `apply` sends only the preview's requests; if the resource changed since the preview it
//!    answers [`ExecutorError::Conflict`] and writes nothing.
//! 4. `verify` reads back; a failed [`Verification`] is a failure the worker reports.
//! 5. `undo` (the `undo` command, an Undo link, an expiry) restores `prior_state` exactly.

pub mod change;
pub mod error;
pub mod guards;
pub mod isolation;
pub mod rotation;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

pub use change::{
    Applied, Change, Check, PlannedRequest, Preview, SentRequest, Undone, Verification, WriteMethod,
};
pub use error::{ExecutorError, ExecutorErrorKind, Refusal, RefusalReason};
pub use rotation::{FollowUp, FollowUpStep};

use crate::azure::{Api, AzureClients};
use crate::config::azure::IsolationSettings;
use crate::domain::task::{Action, Task};

/// What every executor gets: the Azure clients, the isolation settings, and what the worker
/// knows about other pending work.
#[derive(Clone, Debug)]
pub struct ExecutorContext {
    /// The Azure clients.
    pub clients: AzureClients,
    /// Guard rails and inputs.
    pub settings: IsolationSettings,
    /// Normalized ids of the vaults with rotation tasks still to run: their firewall keeps the
    /// responder's own egress open until the rotations are done.
    pub rotation_pending: BTreeSet<String>,
    /// What the rotation executors run with: Key Vault clients, their settings, the clock.
    pub rotation: rotation::RotationContext,
}

impl ExecutorContext {
    /// A context with no pending rotations.
    pub fn new(clients: AzureClients, settings: IsolationSettings) -> Self {
        ExecutorContext {
            clients,
            settings,
            rotation_pending: BTreeSet::new(),
            rotation: rotation::RotationContext::default(),
        }
    }

    /// The same context, with what the rotation executors need.
    pub fn with_rotation(mut self, rotation: rotation::RotationContext) -> Self {
        self.rotation = rotation;
        self
    }

    /// The same context, with the vaults whose rotations are pending.
    pub fn with_rotation_pending<I, S>(mut self, vault_ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rotation_pending = vault_ids
            .into_iter()
            .map(|id| id.as_ref().to_ascii_lowercase())
            .collect();
        self
    }

    /// Sends one planned write through its API's client (budgets, LRO polling included).
    pub async fn send(
        &self,
        request: &PlannedRequest,
    ) -> Result<(SentRequest, Value), ExecutorError> {
        let method = request.method.as_method();
        let body = request.body.as_ref();
        let response = match request.api {
            Api::Arm => self.clients.arm.write(method, &request.url, body).await?,
            Api::Graph => self.clients.graph.write(method, &request.url, body).await?,
            Api::Mde => self.clients.mde.write(method, &request.url, body).await?,
            Api::KeyVault => {
                return Err(ExecutorError::Permanent(
                    "Key Vault requests are sent by the rotation executors' own Key Vault clients, not as planned writes".into(),
                ))
            }
        };
        Ok((
            SentRequest {
                method: request.method.as_str().to_string(),
                url: request.url.clone(),
                status: response.status,
            },
            response.body,
        ))
    }

    /// Sends every request in order; stops at the first failure.
    pub async fn send_all(&self, requests: &[PlannedRequest]) -> Result<Applied, ExecutorError> {
        let mut applied = Applied::default();
        for request in requests {
            let (sent, _) = self.send(request).await?;
            applied.sent.push(sent);
        }
        Ok(applied)
    }
}

/// One task action carried out against Azure.
#[async_trait]
pub trait Executor: Send + Sync {
    /// The action this executor carries out.
    fn action(&self) -> Action;

    /// Resolves the target, reads its state and computes the exact change, writing nothing.
    /// A guard rail answers [`ExecutorError::Refused`]; a target already contained answers a
    /// preview whose change [`Change::is_noop`].
    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError>;

    /// Sends the preview's requests, and nothing else. If the resource is no longer in the
    /// state the preview saw, answers [`ExecutorError::Conflict`] before writing.
    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError>;

    /// Reads the resource back and compares it with what the change should have made.
    async fn verify(
        &self,
        task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError>;

    /// Restores the preview's `prior_state` exactly (what cannot be restored is listed).
    async fn undo(
        &self,
        task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError>;

    /// Performs a step an earlier `apply` left in [`Applied::follow_up`] (disable the old
    /// versions after the grace window, …), once its `not_before` has passed; the worker's
    /// timer calls it. It may answer another follow-up. Executors that schedule none refuse.
    async fn follow_up(
        &self,
        task: &Task,
        follow_up: &FollowUp,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let _ = (task, ctx);
        Err(ExecutorError::Permanent(format!(
            "{} schedules no follow-up step; it was asked for one due at {}",
            self.action(),
            follow_up.not_before
        )))
    }
}

/// The executors by action. Actions without one are recorded by the worker as
/// `not_automated` (with a notification), never dropped.
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    executors: BTreeMap<Action, Arc<dyn Executor>>,
}

impl std::fmt::Debug for ExecutorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.executors.keys()).finish()
    }
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        ExecutorRegistry::default()
    }

    /// Every executor the responder ships: one line per action.
    pub fn standard() -> Self {
        let mut registry = ExecutorRegistry::empty();
        isolation::register(&mut registry);
        rotation::register(&mut registry);
        registry
    }

    /// Registers (or replaces) the executor of its action.
    pub fn register(&mut self, executor: Arc<dyn Executor>) -> &mut Self {
        self.executors.insert(executor.action(), executor);
        self
    }

    /// The executor of `action`, when there is one.
    pub fn get(&self, action: Action) -> Option<Arc<dyn Executor>> {
        self.executors.get(&action).cloned()
    }

    /// The actions that have an executor.
    pub fn actions(&self) -> Vec<Action> {
        self.executors.keys().copied().collect()
    }
}
