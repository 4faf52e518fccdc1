//! The Key Vault data plane of the rotation executors, through the official 1.x clients: version metadata, new versions, attribute and tag updates, key rotation, certificate creation.
//!
//! Values cross this module only as [`SecretValue`], which neither prints nor serialises; every
//! answer is reduced to [`ObjectVersion`] (ids, flags, times, tags, content type) before it
//! leaves, so a secret value read or written here cannot reach a log, a preview or a journal
//! entry. Vault URIs name `https://{vault}.vault.azure.net`; [`KeyVaultConnector::with_endpoint`]
//! points a vault name elsewhere (the local simulator, a private endpoint's name).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_security_keyvault_certificates::models::{
    CertificateAttributes, CertificateClientGetCertificateOperationOptions,
    CertificateClientUpdateCertificatePropertiesOptions, CertificateOperation,
    CertificateProperties, CreateCertificateParameters, UpdateCertificatePropertiesParameters,
};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::models::{
    KeyAttributes, KeyClientUpdateKeyPropertiesOptions, KeyProperties,
    UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::models::{
    SecretAttributes, SecretClientGetSecretOptions, SecretClientUpdateSecretPropertiesOptions,
    SecretProperties, SetSecretParameters, UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::error::{AzureError, AzureErrorKind};
use crate::domain::ids::VaultObjectUri;

/// The data-plane api-version every call uses (the 1.x crates' default).
pub const KEY_VAULT_API_VERSION: &str = "2025-07-01";

/// A secret value on its way into a vault. It never prints (`Debug` and `Display` say
/// `<redacted>`) and has no `Serialize`, so it cannot end up in a log line or a JSON record.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value, for the one request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in characters (what a preview may say about it).
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One version of a secret, key or certificate, as metadata only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// The version id (the last segment of the object id).
    pub version: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Created, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Last updated, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
    /// The content type (secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl ObjectVersion {
    /// The value of a tag.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.get(name).map(String::as_str)
    }
}

/// The state of a certificate's pending creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCertificate {
    /// `inProgress`, `completed`, `failed`, `cancelled`.
    pub status: String,
    /// The request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The error the operation ended with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PendingCertificate {
    /// Whether the operation is still running.
    pub fn in_progress(&self) -> bool {
        self.status.eq_ignore_ascii_case("inProgress")
    }

    /// Whether it ended with a new version.
    pub fn completed(&self) -> bool {
        self.status.eq_ignore_ascii_case("completed")
    }
}

/// Builds the Key Vault clients for any vault, with one credential and transport.
#[derive(Clone)]
pub struct KeyVaultConnector {
    credential: Arc<dyn TokenCredential>,
    transport: Option<Transport>,
    verify_challenge_resource: bool,
    endpoints: BTreeMap<String, String>,
}

impl fmt::Debug for KeyVaultConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVaultConnector")
            .field("endpoints", &self.endpoints)
            .field("verify_challenge_resource", &self.verify_challenge_resource)
            .finish_non_exhaustive()
    }
}

impl KeyVaultConnector {
    /// Clients on the default transport, reaching each vault at the host its URIs name.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        crate::tls::install_crypto_provider();
        KeyVaultConnector {
            credential,
            transport: None,
            verify_challenge_resource: true,
            endpoints: BTreeMap::new(),
        }
    }

    /// Trusts one more certificate (PEM) besides the system roots.
    pub fn trusting_certificate(mut self, pem: &str) -> Result<Self, AzureError> {
        let certificate =
            reqwest_for_azure_core::Certificate::from_pem(pem.as_bytes()).map_err(|error| {
                AzureError::local(
                    AzureErrorKind::Transport,
                    "CONFIGURE",
                    "",
                    format!("the extra certificate does not parse as PEM: {error}"),
                )
            })?;
        let http = reqwest_for_azure_core::Client::builder()
            .tls_certs_merge([certificate])
            .build()
            .map_err(|error| {
                AzureError::local(
                    AzureErrorKind::Transport,
                    "CONFIGURE",
                    "",
                    format!("the HTTP client cannot be built: {error}"),
                )
            })?;
        self.transport = Some(Transport::new(Arc::new(http)));
        Ok(self)
    }

    /// Accepts a 401 challenge whose resource does not match the vault's host: needed when a
    /// vault is reached at an address that is not under its Key Vault domain (`127.0.0.1`).
    pub fn without_challenge_resource_check(mut self) -> Self {
        self.verify_challenge_resource = false;
        self
    }

    /// Reaches the vault named `vault` (the first label of its host) at `url` instead.
    pub fn with_endpoint(mut self, vault: &str, url: &str) -> Self {
        self.endpoints.insert(
            vault.to_ascii_lowercase(),
            url.trim_end_matches('/').to_string(),
        );
        self
    }

    /// The data-plane URL of the vault an object lives in.
    pub fn endpoint_of(&self, object: &VaultObjectUri) -> String {
        self.endpoints
            .get(&object.vault_name().to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| format!("https://{}", object.host()))
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: self.transport.clone(),
            // The worker decides about retries (Retry-After becomes a delayed redelivery), so a
            // throttled call is not slept on here under a resource lease.
            retry: RetryOptions::none(),
            ..ClientOptions::default()
        }
    }

    /// The clients for the vault an object lives in.
    pub fn vault(&self, object: &VaultObjectUri) -> Result<VaultClient, AzureError> {
        let endpoint = self.endpoint_of(object);
        let configure = |error: azure_core::Error| {
            AzureError::local(
                AzureErrorKind::BadRequest,
                "CONFIGURE",
                &endpoint,
                format!("no Key Vault client for {endpoint}: {error}"),
            )
        };
        let secrets = SecretClient::new(
            &endpoint,
            self.credential.clone(),
            Some(SecretClientOptions {
                api_version: KEY_VAULT_API_VERSION.into(),
                client_options: self.client_options(),
                verify_challenge_resource: Some(self.verify_challenge_resource),
            }),
        )
        .map_err(configure)?;
        let keys = KeyClient::new(
            &endpoint,
            self.credential.clone(),
            Some(KeyClientOptions {
                api_version: KEY_VAULT_API_VERSION.into(),
                client_options: self.client_options(),
                verify_challenge_resource: Some(self.verify_challenge_resource),
            }),
        )
        .map_err(configure)?;
        let certificates = CertificateClient::new(
            &endpoint,
            self.credential.clone(),
            Some(CertificateClientOptions {
                api_version: KEY_VAULT_API_VERSION.into(),
                client_options: self.client_options(),
                verify_challenge_resource: Some(self.verify_challenge_resource),
            }),
        )
        .map_err(configure)?;
        Ok(VaultClient {
            endpoint,
            secrets,
            keys,
            certificates,
        })
    }
}

/// The secret, key and certificate clients of one vault.
pub struct VaultClient {
    endpoint: String,
    secrets: SecretClient,
    keys: KeyClient,
    certificates: CertificateClient,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn unix(time: Option<azure_core::time::OffsetDateTime>) -> Option<i64> {
    time.map(|t| t.unix_timestamp())
}

fn tags_of(tags: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.unwrap_or_default().into_iter().collect()
}

fn last_segment(id: &str) -> String {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Oldest first by creation time; versions created in the same second keep the order the
/// vault listed them in (its own creation order).
fn by_creation(mut versions: Vec<ObjectVersion>) -> Vec<ObjectVersion> {
    versions.sort_by_key(|v| v.created);
    versions
}

fn secret_version(properties: SecretProperties) -> ObjectVersion {
    let attributes = properties.attributes.unwrap_or_default();
    ObjectVersion {
        version: last_segment(properties.id.as_deref().unwrap_or_default()),
        enabled: attributes.enabled.unwrap_or(true),
        created: unix(attributes.created),
        updated: unix(attributes.updated),
        content_type: properties.content_type,
        tags: tags_of(properties.tags),
    }
}

fn key_version(properties: KeyProperties) -> ObjectVersion {
    let attributes = properties.attributes.unwrap_or_default();
    ObjectVersion {
        version: last_segment(properties.kid.as_deref().unwrap_or_default()),
        enabled: attributes.enabled.unwrap_or(true),
        created: unix(attributes.created),
        updated: unix(attributes.updated),
        content_type: None,
        tags: tags_of(properties.tags),
    }
}

fn certificate_version(properties: CertificateProperties) -> ObjectVersion {
    let attributes = properties.attributes.unwrap_or_default();
    ObjectVersion {
        version: last_segment(properties.id.as_deref().unwrap_or_default()),
        enabled: attributes.enabled.unwrap_or(true),
        created: unix(attributes.created),
        updated: unix(attributes.updated),
        content_type: None,
        tags: tags_of(properties.tags),
    }
}

fn pending_of(operation: CertificateOperation) -> PendingCertificate {
    PendingCertificate {
        status: operation.status.unwrap_or_else(|| "inProgress".into()),
        request_id: operation.request_id,
        error: operation
            .error
            .map(|error| error.message.or(error.code).unwrap_or_default()),
    }
}

/// The Key Vault error body: `{"error":{"code","message"}}` (never a secret value).
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

/// Turns an `azure_core` error into the responder's classified error, reading the vault's
/// error code and message and `Retry-After` from the answer.
fn classify(error: azure_core::Error, method: &str, url: &str) -> AzureError {
    match error.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let status = u16::from(*status);
            let detail = raw_response
                .as_ref()
                .and_then(|raw| serde_json::from_slice::<ErrorBody>(raw.body().as_ref()).ok())
                .map(|body| body.error);
            let code = detail
                .as_ref()
                .and_then(|d| d.code.clone())
                .or_else(|| error_code.clone());
            let message = detail
                .and_then(|d| d.message)
                .unwrap_or_else(|| format!("Key Vault answered {status}"));
            let retry_after = raw_response.as_ref().and_then(|raw| {
                raw.headers()
                    .get_optional_str(&azure_core::http::headers::RETRY_AFTER)
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(std::time::Duration::from_secs)
            });
            AzureError {
                kind: AzureError::kind_for(status, code.as_deref()),
                method: method.to_string(),
                url: url.to_string(),
                status: Some(status),
                code,
                message,
                retry_after,
            }
        }
        ErrorKind::Credential => AzureError::local(
            AzureErrorKind::Credential,
            method,
            url,
            format!("no token for Key Vault: {error}"),
        ),
        ErrorKind::Connection | ErrorKind::Io => {
            AzureError::local(AzureErrorKind::Transport, method, url, error.to_string())
        }
        _ => AzureError::local(AzureErrorKind::Decode, method, url, error.to_string()),
    }
}

impl VaultClient {
    /// The vault's data-plane URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of a request, for previews and errors: `{endpoint}/{path}?api-version=…`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}?api-version={KEY_VAULT_API_VERSION}",
            self.endpoint,
            path.trim_start_matches('/')
        )
    }

    /// Every version of a secret (metadata only: `GET /secrets/{name}/versions`), oldest first.
    pub async fn secret_versions(&self, name: &str) -> Result<Vec<ObjectVersion>, AzureError> {
        let url = self.url(&format!("secrets/{name}/versions"));
        let pager = self
            .secrets
            .list_secret_properties_versions(name, None)
            .map_err(|e| classify(e, "GET", &url))?;
        let versions: Vec<SecretProperties> = pager
            .try_collect()
            .await
            .map_err(|e| classify(e, "GET", &url))?;
        Ok(by_creation(
            versions.into_iter().map(secret_version).collect(),
        ))
    }

    /// The value of one secret version (`GET /secrets/{name}/{version}`), for a generator that
    /// keeps the rest of a connection string. Never logged.
    pub async fn secret_value(&self, name: &str, version: &str) -> Result<SecretValue, AzureError> {
        let url = self.url(&format!("secrets/{name}/{version}"));
        let secret = self
            .secrets
            .get_secret(
                name,
                Some(SecretClientGetSecretOptions {
                    secret_version: Some(version.to_string()),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| classify(e, "GET", &url))?
            .into_model()
            .map_err(|e| classify(e, "GET", &url))?;
        Ok(SecretValue::new(secret.value.unwrap_or_default()))
    }

    /// Writes a new version (`PUT /secrets/{name}`) and returns its metadata.
    pub async fn set_secret(
        &self,
        name: &str,
        value: &SecretValue,
        content_type: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<ObjectVersion, AzureError> {
        let url = self.url(&format!("secrets/{name}"));
        let parameters = SetSecretParameters {
            value: Some(value.expose().to_string()),
            content_type: content_type.map(str::to_string),
            tags: Some(tags.clone().into_iter().collect()),
            ..Default::default()
        };
        let body = parameters
            .try_into()
            .map_err(|e| classify(e, "PUT", &url))?;
        let secret = self
            .secrets
            .set_secret(name, body, None)
            .await
            .map_err(|e| classify(e, "PUT", &url))?
            .into_model()
            .map_err(|e| classify(e, "PUT", &url))?;
        let attributes = secret.attributes.unwrap_or_default();
        Ok(ObjectVersion {
            version: last_segment(secret.id.as_deref().unwrap_or_default()),
            enabled: attributes.enabled.unwrap_or(true),
            created: unix(attributes.created),
            updated: unix(attributes.updated),
            content_type: secret.content_type,
            tags: tags_of(secret.tags),
        })
    }

    /// Sets a secret version's `enabled` and/or tags (`PATCH /secrets/{name}/{version}`).
    pub async fn update_secret_version(
        &self,
        name: &str,
        version: &str,
        enabled: Option<bool>,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Result<(), AzureError> {
        let url = self.url(&format!("secrets/{name}/{version}"));
        let parameters = UpdateSecretPropertiesParameters {
            secret_attributes: enabled.map(|enabled| SecretAttributes {
                enabled: Some(enabled),
                ..Default::default()
            }),
            tags: tags.map(|tags| tags.clone().into_iter().collect()),
            ..Default::default()
        };
        let body = parameters
            .try_into()
            .map_err(|e| classify(e, "PATCH", &url))?;
        self.secrets
            .update_secret_properties(
                name,
                body,
                Some(SecretClientUpdateSecretPropertiesOptions {
                    secret_version: Some(version.to_string()),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| classify(e, "PATCH", &url))?;
        Ok(())
    }

    /// Every version of a key, oldest first.
    pub async fn key_versions(&self, name: &str) -> Result<Vec<ObjectVersion>, AzureError> {
        let url = self.url(&format!("keys/{name}/versions"));
        let pager = self
            .keys
            .list_key_properties_versions(name, None)
            .map_err(|e| classify(e, "GET", &url))?;
        let versions: Vec<KeyProperties> = pager
            .try_collect()
            .await
            .map_err(|e| classify(e, "GET", &url))?;
        Ok(by_creation(versions.into_iter().map(key_version).collect()))
    }

    /// Rotates a key by its rotation policy (`POST /keys/{name}/rotate`): the new version.
    pub async fn rotate_key(&self, name: &str) -> Result<ObjectVersion, AzureError> {
        let url = self.url(&format!("keys/{name}/rotate"));
        let key = self
            .keys
            .rotate_key(name, None)
            .await
            .map_err(|e| classify(e, "POST", &url))?
            .into_model()
            .map_err(|e| classify(e, "POST", &url))?;
        let attributes = key.attributes.unwrap_or_default();
        let kid = key.key.and_then(|jwk| jwk.kid).unwrap_or_default();
        Ok(ObjectVersion {
            version: last_segment(&kid),
            enabled: attributes.enabled.unwrap_or(true),
            created: unix(attributes.created),
            updated: unix(attributes.updated),
            content_type: None,
            tags: tags_of(key.tags),
        })
    }

    /// Sets a key version's `enabled` and/or tags (`PATCH /keys/{name}/{version}`).
    pub async fn update_key_version(
        &self,
        name: &str,
        version: &str,
        enabled: Option<bool>,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Result<(), AzureError> {
        let url = self.url(&format!("keys/{name}/{version}"));
        let parameters = UpdateKeyPropertiesParameters {
            key_attributes: enabled.map(|enabled| KeyAttributes {
                enabled: Some(enabled),
                ..Default::default()
            }),
            tags: tags.map(|tags| tags.clone().into_iter().collect()),
            ..Default::default()
        };
        let body = parameters
            .try_into()
            .map_err(|e| classify(e, "PATCH", &url))?;
        self.keys
            .update_key_properties(
                name,
                body,
                Some(KeyClientUpdateKeyPropertiesOptions {
                    key_version: Some(version.to_string()),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| classify(e, "PATCH", &url))?;
        Ok(())
    }

    /// Every version of a certificate, oldest first.
    pub async fn certificate_versions(&self, name: &str) -> Result<Vec<ObjectVersion>, AzureError> {
        let url = self.url(&format!("certificates/{name}/versions"));
        let pager = self
            .certificates
            .list_certificate_properties_versions(name, None)
            .map_err(|e| classify(e, "GET", &url))?;
        let versions: Vec<CertificateProperties> = pager
            .try_collect()
            .await
            .map_err(|e| classify(e, "GET", &url))?;
        Ok(by_creation(
            versions.into_iter().map(certificate_version).collect(),
        ))
    }

    /// Starts a new certificate version from the certificate's saved policy
    /// (`GET /certificates/{name}/policy`, then `POST /certificates/{name}/create` with it and
    /// the tags): the pending operation as first answered.
    pub async fn create_certificate_version(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<PendingCertificate, AzureError> {
        let policy_url = self.url(&format!("certificates/{name}/policy"));
        let policy = self
            .certificates
            .get_certificate_policy(name, None)
            .await
            .map_err(|e| classify(e, "GET", &policy_url))?
            .into_model()
            .map_err(|e| classify(e, "GET", &policy_url))?;
        let url = self.url(&format!("certificates/{name}/create"));
        let parameters = CreateCertificateParameters {
            certificate_policy: Some(policy),
            tags: Some(tags.clone().into_iter().collect()),
            ..Default::default()
        };
        let body = parameters
            .try_into()
            .map_err(|e| classify(e, "POST", &url))?;
        let poller = self
            .certificates
            .begin_create_certificate(name, body, None)
            .map_err(|e| classify(e, "POST", &url))?;
        // The first item of the poller is the answer to the POST: the operation as created.
        // Polling after it is the caller's, bounded, through `certificate_operation`.
        let mut poller = std::pin::pin!(poller);
        let first = poller
            .try_next()
            .await
            .map_err(|e| classify(e, "POST", &url))?
            .ok_or_else(|| {
                AzureError::local(
                    AzureErrorKind::Decode,
                    "POST",
                    &url,
                    "the create answered nothing",
                )
            })?
            .into_model()
            .map_err(|e| classify(e, "POST", &url))?;
        Ok(pending_of(first))
    }

    /// The pending creation of a certificate (`GET /certificates/{name}/pending`).
    pub async fn certificate_operation(
        &self,
        name: &str,
    ) -> Result<PendingCertificate, AzureError> {
        let url = self.url(&format!("certificates/{name}/pending"));
        let operation = self
            .certificates
            .get_certificate_operation(
                name,
                None::<CertificateClientGetCertificateOperationOptions<'_>>,
            )
            .await
            .map_err(|e| classify(e, "GET", &url))?
            .into_model()
            .map_err(|e| classify(e, "GET", &url))?;
        Ok(pending_of(operation))
    }

    /// Sets a certificate version's `enabled` and/or tags (`PATCH /certificates/{name}/{version}`).
    pub async fn update_certificate_version(
        &self,
        name: &str,
        version: &str,
        enabled: Option<bool>,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Result<(), AzureError> {
        let url = self.url(&format!("certificates/{name}/{version}"));
        let parameters = UpdateCertificatePropertiesParameters {
            certificate_attributes: enabled.map(|enabled| CertificateAttributes {
                enabled: Some(enabled),
                ..Default::default()
            }),
            tags: tags.map(|tags| tags.clone().into_iter().collect()),
            ..Default::default()
        };
        let body = parameters
            .try_into()
            .map_err(|e| classify(e, "PATCH", &url))?;
        self.certificates
            .update_certificate_properties(
                name,
                body,
                Some(CertificateClientUpdateCertificatePropertiesOptions {
                    certificate_version: Some(version.to_string()),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| classify(e, "PATCH", &url))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_value_never_prints() {
        let value = SecretValue::new("azure-sim-canary-current-password");
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted>)");
        assert_eq!(value.to_string(), "<redacted>");
        assert_eq!(value.len(), 33);
    }

    #[test]
    fn versions_sort_oldest_first_and_ids_give_their_last_segment() {
        let version = |v: &str, created| ObjectVersion {
            version: v.into(),
            created: Some(created),
            ..Default::default()
        };
        let sorted = by_creation(vec![version("b", 20), version("a", 10)]);
        assert_eq!(sorted[0].version, "a");
        assert_eq!(last_segment("https://kv/secrets/s/abc"), "abc");
    }
}
