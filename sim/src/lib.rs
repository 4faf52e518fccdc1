//! azure-sim: a local, stateful stand-in for the Azure APIs the responder's executors call.
//!
//! One process serves Azure Resource Manager, the Key Vault data plane, Microsoft Graph,
//! Defender for Endpoint and a managed-identity token endpoint on 127.0.0.1, over HTTPS (a
//! self-signed certificate) and plain HTTP on the same port. Each vault also gets a port of its
//! own, so a vault's URL is `https://127.0.0.1:{vault port}` and Key Vault ids round-trip. State
//! lives in memory, seeded from JSON; `/_sim/*` exposes it, the request log and fault injection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), azure_sim::SimError> {
//! let sim = azure_sim::Simulator::start(azure_sim::Seed::example()).await?;
//! let token = sim.token(azure_sim::Audience::Management);
//! println!("{} {}", sim.base_url(), token.len());
//! # Ok(()) }
//! ```

mod access;
mod arm;
mod auth;
mod control;
mod faults;
mod graph;
mod http;
mod mde;
mod seed;
mod server;
mod state;
mod time;
mod vault;

use std::sync::Arc;

pub use auth::Audience;
pub use faults::{Fault, FaultRule, ThrottleConfig, ThrottleLimit};
pub use seed::Seed;
pub use server::{Simulator, SimulatorHandle};

/// Everything that can stop the simulator from starting.
#[derive(Debug)]
pub enum SimError {
    /// The seed JSON did not decode; the message names the field.
    Seed(String),
    /// A listener could not be bound.
    Bind(std::io::Error),
    /// The TLS certificate or configuration could not be built.
    Tls(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Seed(message) => write!(f, "invalid seed: {message}"),
            SimError::Bind(error) => write!(f, "cannot bind a listener on 127.0.0.1: {error}"),
            SimError::Tls(message) => write!(f, "cannot build the TLS configuration: {message}"),
        }
    }
}

impl std::error::Error for SimError {}

/// State shared by every listener of one simulator.
pub(crate) type Shared = Arc<state::Sim>;
