//! Embedded store settings: where the SQLite file of the local queues and the ledger lives.

use std::path::PathBuf;

use super::{Lookup, Setting};
use crate::error::Error;

/// Path of the embedded SQLite store (queues when no Service Bus is set, and the alert ledger
/// when the journal is not in Blob storage).
pub const STORE_PATH: &str = "RESPONDER_STORE_PATH";
/// The store path used when none is set.
pub const DEFAULT_STORE_PATH: &str = ".responder/store.sqlite3";

/// The settings of this area, for the documentation and the drift tests.
pub(super) const SETTINGS: &[Setting] = &[Setting {
    name: STORE_PATH,
    default: DEFAULT_STORE_PATH,
    description: "SQLite file of the embedded queues and the alert ledger (the ledger is in the Blob journal's container when the journal is).",
}];

/// Where the embedded store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    /// Path of the SQLite file.
    pub path: PathBuf,
}

impl StoreSettings {
    /// Reads and validates the area's settings.
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, Error> {
        let path = get(STORE_PATH).unwrap_or_else(|| DEFAULT_STORE_PATH.to_string());
        if path.contains('\0') {
            return Err(Error::configuration(format!(
                "{STORE_PATH}: the path holds a NUL character"
            )));
        }
        Ok(StoreSettings {
            path: PathBuf::from(path),
        })
    }
}
