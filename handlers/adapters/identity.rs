//! One Azure identity for every client that signs in with Entra ID (Service Bus, storage, the
//! executors): managed identity against a configurable token endpoint, or the developer tools.
//!
//! Managed identity speaks both platform protocols itself, so the endpoint comes from the
//! configuration read at start-up (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER` on App Service and
//! Functions, IMDS elsewhere, `RESPONDER_IDENTITY_ENDPOINT` for tests and simulators) instead of
//! from the process environment at call time. Tokens are cached per scope until five minutes
//! before they lapse. No token, and no `IDENTITY_HEADER`, ever reaches a log or an error.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind as AzureErrorKind;
use azure_core::http::StatusCode;
use azure_core::time::OffsetDateTime;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{IdentitySettings, TokenEndpoint};
use crate::error::{Error, ErrorKind};

/// How long before its expiry a cached token is renewed.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// Bound on one token request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The credential a client uses: managed identity when the settings say so for `client_id`
/// (a user-assigned identity's client id, `None` for the system-assigned one), otherwise the
/// developer's Azure CLI / Azure Developer CLI sign-in.
pub fn credential(
    settings: &IdentitySettings,
    client_id: Option<&str>,
) -> Arc<dyn TokenCredential> {
    if settings.uses_managed_identity(client_id) {
        Arc::new(ManagedIdentity::new(
            settings.token_endpoint.clone(),
            client_id.map(str::to_string),
        ))
    } else {
        crate::tls::install_crypto_provider();
        match azure_identity::DeveloperToolsCredential::new(None) {
            Ok(credential) => credential,
            Err(err) => Arc::new(Unavailable(format!("developer tools credential: {err}"))),
        }
    }
}

/// Sorts a failure to get a token: the platform or the tools refusing the identity (no such
/// identity, not signed in, forbidden) is a configuration fault; an unreachable endpoint, a
/// throttled or failing one is transient.
pub fn classify_token_error(err: &azure_core::Error) -> ErrorKind {
    match err.kind() {
        AzureErrorKind::HttpResponse { status, .. } => {
            if *status == StatusCode::TooManyRequests || u16::from(*status) >= 500 {
                ErrorKind::Transient
            } else {
                ErrorKind::Configuration
            }
        }
        AzureErrorKind::Credential => ErrorKind::Configuration,
        AzureErrorKind::Connection | AzureErrorKind::Io => ErrorKind::Transient,
        _ => ErrorKind::Transient,
    }
}

/// A token for `scope`, with failures sorted by [`classify_token_error`]; `what` names the
/// client and its setting for the message (e.g. "Service Bus (ServiceBusConnection__fullyQualifiedNamespace)").
pub async fn token(
    credential: &dyn TokenCredential,
    scope: &str,
    what: &str,
) -> Result<AccessToken, Error> {
    credential.get_token(&[scope], None).await.map_err(|err| {
        let kind = classify_token_error(&err);
        // The credential's error names the failing source, never the token.
        Error::new(
            kind,
            format!("getting an Entra ID token for {what} failed: {err}"),
        )
        .with_source(err)
    })
}

/// Managed identity: App Service / Functions protocol or IMDS, as configured.
pub struct ManagedIdentity {
    endpoint: TokenEndpoint,
    client_id: Option<String>,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, AccessToken>>,
}

impl fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentity")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The token endpoints' reply (both protocols).
#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// An error reply: `{"error": …, "error_description": …}` (IMDS) or `{"message": …}` (App Service).
#[derive(Deserialize, Default)]
struct ErrorReply {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ManagedIdentity {
    /// A credential asking `endpoint` for tokens of the identity `client_id` (system-assigned
    /// when `None`).
    pub fn new(endpoint: TokenEndpoint, client_id: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // Never through a proxy: the endpoint is the local platform.
            .no_proxy()
            .build()
            .unwrap_or_default();
        ManagedIdentity {
            endpoint,
            client_id,
            http,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn fetch(&self, resource: &str) -> azure_core::Result<AccessToken> {
        let mut url = self.endpoint.url().clone();
        let request = {
            let mut query = url.query_pairs_mut();
            match &self.endpoint {
                TokenEndpoint::AppService { .. } => query.append_pair("api-version", "2019-08-01"),
                TokenEndpoint::Imds { .. } => query.append_pair("api-version", "2018-02-01"),
            };
            query.append_pair("resource", resource);
            if let Some(id) = &self.client_id {
                query.append_pair("client_id", id);
            }
            drop(query);
            let request = self.http.get(url.clone());
            match &self.endpoint {
                TokenEndpoint::AppService { header, .. } => {
                    request.header("X-IDENTITY-HEADER", header.secret())
                }
                TokenEndpoint::Imds { .. } => request.header("Metadata", "true"),
            }
        };
        let where_ = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.path()
        );
        let response = request.send().await.map_err(|err| {
            azure_core::Error::with_message(
                AzureErrorKind::Connection,
                format!("managed identity endpoint {where_} is unreachable: {err}"),
            )
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|err| {
            azure_core::Error::with_message(
                AzureErrorKind::Io,
                format!("reading the reply of {where_}: {err}"),
            )
        })?;
        if !(200..300).contains(&status) {
            let reply: ErrorReply = serde_json::from_slice(&body).unwrap_or_default();
            let detail = [reply.error, reply.error_description, reply.message]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            let identity = self.client_id.as_deref().unwrap_or("system-assigned");
            return Err(azure_core::Error::with_message(
                AzureErrorKind::HttpResponse {
                    status: StatusCode::from(status),
                    error_code: None,
                    raw_response: None,
                },
                format!("{where_} answered {status} for identity {identity}: {detail}"),
            ));
        }
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|err| {
            azure_core::Error::with_message(
                AzureErrorKind::DataConversion,
                format!("{where_} answered with something that is not a token reply: {err}"),
            )
        })?;
        let expires_on =
            expiry(reply.expires_on.as_ref(), reply.expires_in.as_ref()).ok_or_else(|| {
                azure_core::Error::with_message(
                    AzureErrorKind::DataConversion,
                    format!("{where_} answered a token without expires_on or expires_in"),
                )
            })?;
        Ok(AccessToken::new(
            Secret::new(reply.access_token),
            expires_on,
        ))
    }
}

/// `expires_on` (unix seconds as a number or a string) or `expires_in` (seconds from now).
fn expiry(
    expires_on: Option<&serde_json::Value>,
    expires_in: Option<&serde_json::Value>,
) -> Option<OffsetDateTime> {
    let seconds = |value: &serde_json::Value| match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    if let Some(at) = expires_on.and_then(seconds) {
        return OffsetDateTime::from_unix_timestamp(at).ok();
    }
    expires_in
        .and_then(seconds)
        .map(|s| OffsetDateTime::now_utc() + azure_core::time::Duration::seconds(s))
}

#[async_trait::async_trait]
impl TokenCredential for ManagedIdentity {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(azure_core::Error::with_message(
                AzureErrorKind::Credential,
                "managed identity takes exactly one scope",
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut cache = self.cache.lock().await;
        let renew_at = OffsetDateTime::now_utc()
            + azure_core::time::Duration::seconds(RENEW_BEFORE.as_secs() as i64);
        if let Some(token) = cache.get(resource) {
            if token.expires_on > renew_at {
                return Ok(token.clone());
            }
        }
        let token = self.fetch(resource).await?;
        cache.insert(resource.to_string(), token.clone());
        Ok(token)
    }
}

/// A credential that could not be built: every request fails with the reason.
#[derive(Debug)]
struct Unavailable(String);

#[async_trait::async_trait]
impl TokenCredential for Unavailable {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Err(azure_core::Error::with_message(
            AzureErrorKind::Credential,
            self.0.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_both_shapes() {
        let at = expiry(Some(&serde_json::json!("1767225600")), None).unwrap();
        assert_eq!(at.unix_timestamp(), 1767225600);
        let at = expiry(Some(&serde_json::json!(1767225600)), None).unwrap();
        assert_eq!(at.unix_timestamp(), 1767225600);
        let soon = expiry(None, Some(&serde_json::json!("3600"))).unwrap();
        assert!(soon > OffsetDateTime::now_utc());
        assert!(expiry(None, None).is_none());
    }

    #[test]
    fn refusals_are_configuration_and_outages_transient() {
        let http = |status: u16| {
            azure_core::Error::with_message(
                AzureErrorKind::HttpResponse {
                    status: StatusCode::from(status),
                    error_code: None,
                    raw_response: None,
                },
                "x",
            )
        };
        assert_eq!(classify_token_error(&http(400)), ErrorKind::Configuration);
        assert_eq!(classify_token_error(&http(403)), ErrorKind::Configuration);
        assert_eq!(classify_token_error(&http(429)), ErrorKind::Transient);
        assert_eq!(classify_token_error(&http(503)), ErrorKind::Transient);
        let refused = azure_core::Error::with_message(AzureErrorKind::Connection, "x");
        assert_eq!(classify_token_error(&refused), ErrorKind::Transient);
        let tools = azure_core::Error::with_message(AzureErrorKind::Credential, "az login");
        assert_eq!(classify_token_error(&tools), ErrorKind::Configuration);
    }
}
