//! Azure identity settings shared by every client that signs in with Entra ID (Service Bus,
//! storage, the executors): which credential to use and where managed identity gets tokens.

use azure_core::credentials::Secret;
use std::fmt;
use url::Url;

use super::{Lookup, Setting};
use crate::error::Error;

/// Which credential signs in: `auto`, `managed_identity` or `developer_tools`.
pub const IDENTITY: &str = "RESPONDER_IDENTITY";
/// Token endpoint used instead of the platform's (tests and local simulators).
pub const IDENTITY_ENDPOINT_OVERRIDE: &str = "RESPONDER_IDENTITY_ENDPOINT";
/// Managed identity endpoint that App Service and Functions set for the process.
pub const PLATFORM_IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
/// The header value App Service and Functions set next to [`PLATFORM_IDENTITY_ENDPOINT`].
pub const PLATFORM_IDENTITY_HEADER: &str = "IDENTITY_HEADER";
/// The Azure Instance Metadata Service token endpoint (VMs, and the fallback elsewhere).
pub const IMDS_TOKEN_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// The settings of this area, for the documentation and the drift tests.
pub(super) const SETTINGS: &[Setting] = &[
    Setting { name: IDENTITY, default: "auto", description: "Entra ID credential: auto (managed identity when the platform provides one or a client id is set, else the developer's Azure CLI / azd sign-in), managed_identity or developer_tools." },
    Setting { name: IDENTITY_ENDPOINT_OVERRIDE, default: "", description: "Token endpoint managed identity uses instead of the platform's (IDENTITY_ENDPOINT or IMDS), e.g. a local token server for tests; the App Service protocol when IDENTITY_HEADER is set, else the IMDS protocol." },
    Setting { name: PLATFORM_IDENTITY_ENDPOINT, default: "", description: "Set by App Service and Functions: the managed identity endpoint. Never set it by hand on Azure." },
    Setting { name: PLATFORM_IDENTITY_HEADER, default: "", description: "Set by App Service and Functions next to IDENTITY_ENDPOINT; sent as X-IDENTITY-HEADER, never logged." },
];

/// Which credential to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// Managed identity when the platform provides one or a client id is configured; the
    /// developer's own sign-in otherwise.
    Auto,
    /// Always managed identity.
    ManagedIdentity,
    /// Always the developer tools (Azure CLI, Azure Developer CLI).
    DeveloperTools,
}

/// How managed identity asks for a token.
#[derive(Clone, PartialEq)]
pub enum TokenEndpoint {
    /// App Service / Functions: `GET <endpoint>?api-version=2019-08-01&resource=…` with the
    /// `X-IDENTITY-HEADER` header.
    AppService {
        /// The endpoint URL.
        endpoint: Url,
        /// The header value (a secret: never logged).
        header: Secret,
    },
    /// Instance Metadata Service: `GET <endpoint>?api-version=2018-02-01&resource=…` with
    /// `Metadata: true`.
    Imds {
        /// The endpoint URL.
        endpoint: Url,
    },
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenEndpoint::AppService { endpoint, .. } => f
                .debug_struct("AppService")
                .field("endpoint", &endpoint.as_str())
                .field("header", &"<redacted>")
                .finish(),
            TokenEndpoint::Imds { endpoint } => f
                .debug_struct("Imds")
                .field("endpoint", &endpoint.as_str())
                .finish(),
        }
    }
}

impl TokenEndpoint {
    /// The endpoint URL.
    pub fn url(&self) -> &Url {
        match self {
            TokenEndpoint::AppService { endpoint, .. } | TokenEndpoint::Imds { endpoint } => {
                endpoint
            }
        }
    }
}

/// The identity settings, read once at start-up.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentitySettings {
    /// Which credential to use.
    pub source: IdentitySource,
    /// Where managed identity gets its tokens.
    pub token_endpoint: TokenEndpoint,
    /// Whether a managed identity endpoint was announced (`IDENTITY_ENDPOINT` by the platform,
    /// or `RESPONDER_IDENTITY_ENDPOINT`).
    pub on_platform: bool,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            source: IdentitySource::Auto,
            token_endpoint: TokenEndpoint::Imds {
                endpoint: imds_url(),
            },
            on_platform: false,
        }
    }
}

fn imds_url() -> Url {
    Url::parse(IMDS_TOKEN_ENDPOINT).expect("IMDS_TOKEN_ENDPOINT is a valid URL")
}

impl IdentitySettings {
    /// Reads and validates the area's settings.
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, Error> {
        let source = match get(IDENTITY).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("auto") => IdentitySource::Auto,
            Some("managed_identity" | "managedidentity") => IdentitySource::ManagedIdentity,
            Some("developer_tools" | "developertools") => IdentitySource::DeveloperTools,
            Some(other) => {
                return Err(Error::configuration(format!(
                    "{IDENTITY}={other:?}: expected auto, managed_identity or developer_tools"
                )))
            }
        };
        let url = |name: &str| -> Result<Option<Url>, Error> {
            get(name)
                .map(|text| {
                    Url::parse(&text)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                        .ok_or_else(|| {
                            Error::configuration(format!("{name}={text:?} is not an http(s) URL"))
                        })
                })
                .transpose()
        };
        let platform = url(PLATFORM_IDENTITY_ENDPOINT)?;
        let override_endpoint = url(IDENTITY_ENDPOINT_OVERRIDE)?;
        let header = get(PLATFORM_IDENTITY_HEADER).map(Secret::new);
        if platform.is_some() && header.is_none() {
            return Err(Error::configuration(format!(
                "{PLATFORM_IDENTITY_ENDPOINT} is set but {PLATFORM_IDENTITY_HEADER} is not: the platform sets both"
            )));
        }
        let on_platform = platform.is_some() || override_endpoint.is_some();
        let token_endpoint = match (header, override_endpoint.or(platform)) {
            (Some(header), Some(endpoint)) => TokenEndpoint::AppService { endpoint, header },
            (_, Some(endpoint)) => TokenEndpoint::Imds { endpoint },
            (_, None) => TokenEndpoint::Imds {
                endpoint: imds_url(),
            },
        };
        Ok(IdentitySettings {
            source,
            token_endpoint,
            on_platform,
        })
    }

    /// Whether a client signing in with `client_id` (a user-assigned identity's, or `None`)
    /// uses managed identity rather than the developer's sign-in.
    pub fn uses_managed_identity(&self, client_id: Option<&str>) -> bool {
        match self.source {
            IdentitySource::ManagedIdentity => true,
            IdentitySource::DeveloperTools => false,
            IdentitySource::Auto => self.on_platform || client_id.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn identity(pairs: &[(&str, &str)]) -> Result<IdentitySettings, Error> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        IdentitySettings::from_lookup(&|name| map.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn the_platform_endpoint_uses_the_app_service_protocol_and_hides_the_header() {
        let s = identity(&[
            (
                PLATFORM_IDENTITY_ENDPOINT,
                "http://127.0.0.1:41741/msi/token",
            ),
            (PLATFORM_IDENTITY_HEADER, "h3ad3r"),
        ])
        .unwrap();
        assert!(matches!(s.token_endpoint, TokenEndpoint::AppService { .. }));
        assert!(s.uses_managed_identity(None));
        assert!(!format!("{s:?}").contains("h3ad3r"));
    }

    #[test]
    fn off_the_platform_auto_uses_the_developer_tools_unless_a_client_id_is_set() {
        let s = identity(&[]).unwrap();
        assert_eq!(s.token_endpoint.url().as_str(), IMDS_TOKEN_ENDPOINT);
        assert!(!s.uses_managed_identity(None));
        assert!(s.uses_managed_identity(Some("11111111-2222-3333-4444-555555555555")));
        let forced = identity(&[(IDENTITY, "developer_tools")]).unwrap();
        assert!(!forced.uses_managed_identity(Some("11111111-2222-3333-4444-555555555555")));
    }

    #[test]
    fn an_override_endpoint_replaces_the_platform_one() {
        let s = identity(&[(IDENTITY_ENDPOINT_OVERRIDE, "http://127.0.0.1:9/token")]).unwrap();
        assert!(
            matches!(&s.token_endpoint, TokenEndpoint::Imds { endpoint } if endpoint.port() == Some(9))
        );
        assert!(s.uses_managed_identity(None));
    }

    #[test]
    fn half_a_platform_identity_is_an_error_naming_both_settings() {
        let err = identity(&[(PLATFORM_IDENTITY_ENDPOINT, "http://127.0.0.1:1/t")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("IDENTITY_ENDPOINT") && err.contains("IDENTITY_HEADER"),
            "{err}"
        );
    }
}
