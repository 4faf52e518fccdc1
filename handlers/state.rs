//! Shared application state: the pipeline and the adapters, held as trait objects.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::{SharedLedger, SharedPublisher};
use crate::approval::DecisionDesk;
use crate::pipeline::Pipeline;
use crate::workers::Worker;

/// What every request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Routing, planning and policy.
    pub pipeline: Arc<Pipeline>,
    /// Where tasks go.
    pub publisher: SharedPublisher,
    /// What was already handled.
    pub ledger: SharedLedger,
    /// The decision endpoint's desk; `None` when decision links are not configured.
    pub decisions: Option<Arc<DecisionDesk>>,
    /// The workers behind the queue-triggered functions; `None` when not configured.
    pub worker: Option<Arc<Worker>>,
    /// How long a decision may take before the sweeper expires it.
    pub decision_timeout: Duration,
}

impl AppState {
    /// Bundles the parts.
    pub fn new(pipeline: Pipeline, publisher: SharedPublisher, ledger: SharedLedger) -> Self {
        AppState {
            pipeline: Arc::new(pipeline),
            publisher,
            ledger,
            decisions: None,
            worker: None,
            decision_timeout: crate::config::workers::DEFAULT_DECISION_TIMEOUT,
        }
    }

    /// Serves the queue-triggered functions with `worker`; decisions time out after `timeout`.
    pub fn with_worker(mut self, worker: Worker, timeout: Duration) -> Self {
        self.worker = Some(Arc::new(worker));
        self.decision_timeout = timeout;
        self
    }

    /// Serves decision links through `desk`.
    pub fn with_decisions(mut self, desk: DecisionDesk) -> Self {
        self.decisions = Some(Arc::new(desk));
        self
    }
}
