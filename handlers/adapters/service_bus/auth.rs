//! Service Bus authorisation: SAS tokens signed from the connection string's key, or Entra ID
//! tokens from the shared identity module, ready to be put to `$cbs`. Nothing here ever prints
//! a key or a token: every type holding one has a hand-written `Debug`.

use crate::adapters::identity;
use crate::config::{ServiceBusAuth, ServiceBusSettings};
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

/// How the sender proves who it is, with the credential built.
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
    pub(crate) token: Secret,
    /// `jwt` or `servicebus.windows.net:sastoken`.
    pub(crate) token_type: &'static str,
    /// When it lapses.
    pub(crate) expires_on: OffsetDateTime,
}

impl Auth {
    /// The runtime authorisation of `settings`: Entra ID through the shared identity module.
    pub(crate) fn from_settings(settings: &ServiceBusSettings) -> Self {
        match &settings.auth {
            ServiceBusAuth::Sasl => Auth::None,
            ServiceBusAuth::SharedKey { key_name, key } => Auth::SharedKey {
                key_name: key_name.clone(),
                key: key.clone(),
            },
            ServiceBusAuth::EntraId { client_id } => Auth::Credential(identity::credential(
                &settings.identity,
                client_id.as_deref(),
            )),
        }
    }

    /// A token for `audience` (the entity URI), or `None` when this broker has no `$cbs`.
    /// `setting` names where the credentials come from, for error messages.
    pub(crate) async fn token(
        &self,
        audience: &str,
        setting: &str,
    ) -> Result<Option<CbsToken>, Error> {
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
                let what = format!("Service Bus ({setting})");
                let token = identity::token(credential.as_ref(), SERVICE_BUS_SCOPE, &what).await?;
                Ok(Some(CbsToken {
                    token: token.token,
                    token_type: JWT_TOKEN_TYPE,
                    expires_on: token.expires_on,
                }))
            }
        }
    }
}
