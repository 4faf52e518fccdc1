//! Shared application state: the pipeline and the adapters, held as trait objects.

use std::sync::Arc;

use crate::adapters::{SharedLedger, SharedPublisher};
use crate::approval::DecisionDesk;
use crate::pipeline::Pipeline;

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
}

impl AppState {
    /// Bundles the parts.
    pub fn new(pipeline: Pipeline, publisher: SharedPublisher, ledger: SharedLedger) -> Self {
        AppState {
            pipeline: Arc::new(pipeline),
            publisher,
            ledger,
            decisions: None,
        }
    }

    /// Serves decision links through `desk`.
    pub fn with_decisions(mut self, desk: DecisionDesk) -> Self {
        self.decisions = Some(Arc::new(desk));
        self
    }
}
