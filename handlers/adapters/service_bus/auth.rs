//! Credentials for the Service Bus sender: SAS tokens, connection strings and Entra ID
//! (managed identity or developer credentials). Nothing here ever prints a key or a token:
//! every type holding one has a hand-written `Debug`.

use crate::error::Error;
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::time::OffsetDateTime;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;

/// The scope of an Entra ID token for Service Bus.
pub(crate) const SERVICE_BUS_SCOPE: &str = "https://servicebus.azure.net/.default";
/// The `$cbs` token type of a SAS token (an Entra ID token is of type `jwt`).
pub(crate) const SAS_TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";
pub(crate) const JWT_TOKEN_TYPE: &str = "jwt";
/// How long a SAS token we sign ourselves is valid.
pub(crate) const SAS_TOKEN_LIFETIME_SECS: i64 = 3600;

/// Builds a Service Bus shared access signature:
/// `SharedAccessSignature sr=<enc uri>&sig=<enc base64 hmac>&se=<expiry>&skn=<key name>`,
/// where the HMAC-SHA256 (keyed with the key's text as bytes) covers `"<enc uri>\n<expiry>"`.
pub fn sas_token(resource_uri: &str, key_name: &str, key: &str, expiry_unix: u64) -> String {
    let encoded_uri = url_encode(resource_uri);
    let to_sign = format!("{encoded_uri}\n{expiry_unix}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "SharedAccessSignature sr={encoded_uri}&sig={}&se={expiry_unix}&skn={}",
        url_encode(&signature),
        url_encode(key_name)
    )
}

/// `application/x-www-form-urlencoded` encoding, as Python's `urllib.parse.quote_plus`
/// (they agree on every character a URI, a key name or base64 can hold, except `~` and `*`).
fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A parsed `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…` connection string.
#[derive(Clone)]
pub(crate) struct ConnectionString {
    /// Host of the `Endpoint`.
    pub host: String,
    /// Port of the `Endpoint`, when it names one.
    pub port: Option<u16>,
    /// `SharedAccessKeyName`.
    pub key_name: String,
    /// `SharedAccessKey`: signs SAS tokens, never sent or logged.
    pub key: Secret,
    /// `EntityPath`, when the key is scoped to one queue.
    pub entity_path: Option<String>,
    /// `UseDevelopmentEmulator=true`: plain AMQP on 5672 (the Service Bus emulator).
    pub use_development_emulator: bool,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity_path", &self.entity_path)
            .field("use_development_emulator", &self.use_development_emulator)
            .finish()
    }
}

impl ConnectionString {
    /// Parses the `;`-separated `Key=Value` pairs (keys case-insensitive; a value may hold `=`).
    /// Errors never quote the string (it holds the key).
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut entity_path = None;
        let mut emulator = false;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(Error::Config(
                    "ServiceBusConnection: a part of the connection string has no '='".into(),
                ));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.to_string()),
                "sharedaccesskeyname" => key_name = Some(value.to_string()),
                "sharedaccesskey" => key = Some(value.to_string()),
                "entitypath" => entity_path = Some(value.to_string()).filter(|v| !v.is_empty()),
                "usedevelopmentemulator" => emulator = value.eq_ignore_ascii_case("true"),
                "sharedaccesssignature" => {
                    return Err(Error::Config(
                        "ServiceBusConnection: SharedAccessSignature connection strings are not supported; use SharedAccessKeyName/SharedAccessKey".into(),
                    ));
                }
                _ => {} // e.g. TransportType: ignored
            }
        }
        let endpoint = endpoint.ok_or_else(|| {
            Error::Config("ServiceBusConnection: connection string has no Endpoint".into())
        })?;
        let url = url::Url::parse(&endpoint).map_err(|e| {
            Error::Config(format!("ServiceBusConnection: Endpoint is not a URL: {e}"))
        })?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Config("ServiceBusConnection: Endpoint has no host".into()))?
            .to_string();
        Ok(ConnectionString {
            host,
            port: url.port(),
            key_name: key_name.ok_or_else(|| {
                Error::Config(
                    "ServiceBusConnection: connection string has no SharedAccessKeyName".into(),
                )
            })?,
            key: Secret::new(key.ok_or_else(|| {
                Error::Config(
                    "ServiceBusConnection: connection string has no SharedAccessKey".into(),
                )
            })?),
            entity_path,
            use_development_emulator: emulator,
        })
    }
}

/// How the sender proves who it is.
#[derive(Clone)]
pub(crate) enum Auth {
    /// Entra ID token (managed identity or developer credentials) put to `$cbs` as `jwt`.
    Credential(Arc<dyn TokenCredential>),
    /// SAS token signed here from the connection string's key, put to `$cbs`.
    SharedKey {
        /// `SharedAccessKeyName`.
        key_name: String,
        /// `SharedAccessKey`.
        key: Secret,
    },
    /// No `$cbs` (RabbitMQ and other development brokers): SASL PLAIN from the URL, or ANONYMOUS.
    None,
}

impl PartialEq for Auth {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Auth::Credential(a), Auth::Credential(b)) => Arc::ptr_eq(a, b),
            (
                Auth::SharedKey { key_name, key },
                Auth::SharedKey {
                    key_name: other_name,
                    key: other_key,
                },
            ) => key_name == other_name && key.secret() == other_key.secret(),
            (Auth::None, Auth::None) => true,
            _ => false,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Credential(_) => f.write_str("Credential(<token credential>)"),
            Auth::SharedKey { key_name, .. } => f
                .debug_struct("SharedKey")
                .field("key_name", key_name)
                .field("key", &"<redacted>")
                .finish(),
            Auth::None => f.write_str("None"),
        }
    }
}

/// A token ready to be put to `$cbs`.
pub(crate) struct CbsToken {
    /// The token itself.
    pub token: Secret,
    /// `jwt` or `servicebus.windows.net:sastoken`.
    pub token_type: &'static str,
    /// When it lapses.
    pub expires_on: OffsetDateTime,
}

impl Auth {
    /// A token for `audience` (the entity URI), or `None` when this broker has no `$cbs`.
    pub(crate) async fn token(&self, audience: &str) -> Result<Option<CbsToken>, Error> {
        match self {
            Auth::None => Ok(None),
            Auth::SharedKey { key_name, key } => {
                let expires_on = OffsetDateTime::now_utc()
                    + azure_core::time::Duration::seconds(SAS_TOKEN_LIFETIME_SECS);
                let token = sas_token(
                    audience,
                    key_name,
                    key.secret(),
                    expires_on.unix_timestamp() as u64,
                );
                Ok(Some(CbsToken {
                    token: Secret::new(token),
                    token_type: SAS_TOKEN_TYPE,
                    expires_on,
                }))
            }
            Auth::Credential(credential) => {
                let token = credential
                    .get_token(&[SERVICE_BUS_SCOPE], None)
                    .await
                    // The credential's error names the failing source, never the token.
                    .map_err(|e| {
                        Error::Transient(format!("getting an Entra ID token failed: {e}"))
                    })?;
                Ok(Some(CbsToken {
                    token: token.token,
                    token_type: JWT_TOKEN_TYPE,
                    expires_on: token.expires_on,
                }))
            }
        }
    }
}

/// The credential for `ServiceBusConnection__fullyQualifiedNamespace`: managed identity when the
/// platform provides one (`IDENTITY_ENDPOINT`, as App Service and Functions do, or a client id
/// is configured), otherwise the developer's own sign-in (Azure CLI, Azure Developer CLI).
pub(crate) fn entra_credential(
    get: &impl Fn(&str) -> Option<String>,
    client_id: Option<String>,
) -> Result<Arc<dyn TokenCredential>, Error> {
    let on_platform = get("IDENTITY_ENDPOINT").is_some() || get("MSI_ENDPOINT").is_some();
    if on_platform || client_id.is_some() {
        let options = azure_identity::ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(azure_identity::UserAssignedId::ClientId),
            ..Default::default()
        };
        let credential = azure_identity::ManagedIdentityCredential::new(Some(options))
            .map_err(|e| Error::Config(format!("managed identity credential: {e}")))?;
        Ok(credential)
    } else {
        let credential = azure_identity::DeveloperToolsCredential::new(None)
            .map_err(|e| Error::Config(format!("developer tools credential: {e}")))?;
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_string_parses_and_hides_the_key() {
        let cs = ConnectionString::parse(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc/def+g==;EntityPath=notification",
        )
        .unwrap();
        assert_eq!(cs.host, "ns.servicebus.windows.net");
        assert_eq!(cs.key_name, "send");
        assert_eq!(cs.key.secret(), "abc/def+g==");
        assert_eq!(cs.entity_path.as_deref(), Some("notification"));
        assert!(!cs.use_development_emulator);
        let debug = format!("{cs:?}");
        assert!(!debug.contains("abc/def"), "{debug}");
    }

    #[test]
    fn emulator_connection_string() {
        let cs = ConnectionString::parse(
            "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
        )
        .unwrap();
        assert_eq!(cs.host, "localhost");
        assert_eq!(cs.port, None);
        assert!(cs.use_development_emulator);
    }

    #[test]
    fn connection_string_errors_do_not_quote_the_key() {
        let err =
            ConnectionString::parse("SharedAccessKeyName=a;SharedAccessKey=topsecret").unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }
}
