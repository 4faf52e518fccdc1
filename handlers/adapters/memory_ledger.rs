//! An in-memory alert ledger, for the offline `plan` command and tests.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{AlertLedger, Claims, LedgerEntry};
use crate::domain::AlertStatus;
use crate::error::Error;

/// Remembers alerts for the life of the process.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    entries: Mutex<HashMap<String, LedgerEntry>>,
    claims: Claims,
}

impl MemoryLedger {
    /// What is known of an alert (the offline paths call this directly: nothing waits).
    pub fn lookup(&self, system_alert_id: &str) -> Result<Option<LedgerEntry>, Error> {
        let entries = self
            .entries
            .lock()
            .map_err(|_| Error::Transient("ledger lock poisoned".into()))?;
        Ok(entries.get(system_alert_id).copied())
    }

    /// Records an alert's latest status; `planned` is sticky once true.
    pub fn record(
        &self,
        system_alert_id: &str,
        status: AlertStatus,
        planned: bool,
    ) -> Result<(), Error> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| Error::Transient("ledger lock poisoned".into()))?;
        let entry = entries
            .entry(system_alert_id.to_string())
            .or_insert(LedgerEntry { status, planned });
        entry.status = status;
        entry.planned |= planned;
        Ok(())
    }
}

#[async_trait::async_trait]
impl AlertLedger for MemoryLedger {
    async fn lookup(&self, system_alert_id: &str) -> Result<Option<LedgerEntry>, Error> {
        MemoryLedger::lookup(self, system_alert_id)
    }

    async fn record(
        &self,
        system_alert_id: &str,
        status: AlertStatus,
        planned: bool,
    ) -> Result<(), Error> {
        MemoryLedger::record(self, system_alert_id, status, planned)
    }

    fn claims(&self) -> &Claims {
        &self.claims
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
