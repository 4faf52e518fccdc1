//! Server settings: the port the Functions host tells the handler to listen on.

use super::{Lookup, Setting};
use crate::error::Error;

/// Port the host tells the handler to listen on.
pub const PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
/// The port used when the host sets none (running the handler by hand).
pub const DEFAULT_PORT: u16 = 3000;

/// The settings of this area, for the documentation and the drift tests.
pub(super) const SETTINGS: &[Setting] = &[Setting {
    name: PORT,
    default: "3000",
    description: "Port to listen on (127.0.0.1); the Functions host sets it.",
}];

/// Where the HTTP server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// Port on 127.0.0.1.
    pub port: u16,
}

impl ServerSettings {
    /// Reads and validates the area's settings.
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, Error> {
        let port = match get(PORT) {
            Some(text) => text.parse::<u16>().map_err(|_| {
                Error::configuration(format!("{PORT}={text:?} is not a port number"))
            })?,
            None => DEFAULT_PORT,
        };
        Ok(ServerSettings { port })
    }
}
