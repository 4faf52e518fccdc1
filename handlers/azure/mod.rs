//! Small typed clients of the Azure APIs the executors call: Resource Manager, Microsoft
//! Graph and Defender for Endpoint, on one reqwest client with configurable endpoints, a
//! `TokenCredential` for tokens per scope, throttling budgets and LRO polling.
//!
//! Tokens are never logged; a request is logged by method, URL and status only.

pub mod arm;
pub mod budget;
pub mod credential;
pub mod error;
pub mod graph;
pub mod http;
pub mod key_vault;
pub mod mde;

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

pub use arm::ArmClient;
pub use error::{AzureError, AzureErrorKind};
pub use graph::GraphClient;
pub use mde::MdeClient;

use crate::config::azure::AzureSettings;
use crate::error::Error;
use budget::{BucketLimit, TokenBuckets};
use http::ApiClient;

/// The API families a planned request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Azure Resource Manager.
    Arm,
    /// Microsoft Graph.
    Graph,
    /// Defender for Endpoint.
    Mde,
    /// The Key Vault data plane (sent by the rotation executors through the official clients).
    KeyVault,
}

/// The three clients, sharing one connection pool and one credential.
#[derive(Clone, Debug)]
pub struct AzureClients {
    /// Resource Manager.
    pub arm: ArmClient,
    /// Microsoft Graph.
    pub graph: GraphClient,
    /// Defender for Endpoint.
    pub mde: MdeClient,
}

impl AzureClients {
    /// Builds the clients from the settings, with `credential` for every token.
    pub fn new(
        settings: &AzureSettings,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("defender-responder/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.extra_root_certificate {
            let pem = std::fs::read(path).map_err(|err| {
                Error::Config(format!(
                    "{}: cannot read {}: {err}",
                    crate::config::azure::EXTRA_ROOT_CERTIFICATE,
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(certificate(&pem)?);
        }
        let http = builder
            .build()
            .map_err(|err| Error::Config(format!("cannot build the HTTPS client: {err}")))?;
        Ok(Self::with_http(settings, credential, http))
    }

    /// Builds the clients trusting one extra root certificate given as PEM text (tests
    /// against a local simulator).
    pub fn with_root_pem(
        settings: &AzureSettings,
        credential: Arc<dyn TokenCredential>,
        pem: &str,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .add_root_certificate(certificate(pem.as_bytes())?)
            .build()
            .map_err(|err| Error::Config(format!("cannot build the HTTPS client: {err}")))?;
        Ok(Self::with_http(settings, credential, http))
    }

    fn with_http(
        settings: &AzureSettings,
        credential: Arc<dyn TokenCredential>,
        http: reqwest::Client,
    ) -> Self {
        let core = |base: &str, scope: &str| {
            ApiClient::new(
                base,
                scope,
                http.clone(),
                credential.clone(),
                settings.http.clone(),
            )
        };
        let deletes = BucketLimit {
            capacity: settings.arm_write_budget.capacity,
            refill_per_second: settings.arm_write_budget.refill_per_second,
        };
        AzureClients {
            arm: ArmClient::new(
                core(&settings.arm_endpoint, &settings.arm_scope),
                Arc::new(TokenBuckets::new(settings.arm_write_budget)),
                Arc::new(TokenBuckets::new(deletes)),
            ),
            graph: GraphClient::new(core(&settings.graph_endpoint, &settings.graph_scope)),
            mde: MdeClient::new(
                core(&settings.mde_endpoint, &settings.mde_scope),
                Arc::new(TokenBuckets::new(BucketLimit::MDE_ACTIONS)),
            ),
        }
    }
}

fn certificate(pem: &[u8]) -> Result<reqwest::Certificate, Error> {
    reqwest::Certificate::from_pem(pem)
        .map_err(|err| Error::Config(format!("the extra root certificate is not PEM: {err}")))
}
