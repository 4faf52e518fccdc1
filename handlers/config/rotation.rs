//! App settings of the rotation executors: the grace window before old credentials are disabled, where new credentials are stored, what the policy lets them reset, and Key Vault endpoints.

use std::collections::BTreeMap;

use super::Setting;
use crate::error::Error;

/// Seconds consumers get to pick up a new credential before the old one is disabled or removed.
pub const ROTATION_GRACE_SECONDS: &str = "RESPONDER_ROTATION_GRACE_SECONDS";
/// The vault new service-principal and user credentials are written to.
pub const ROTATION_CREDENTIALS_VAULT: &str = "RESPONDER_ROTATION_CREDENTIALS_VAULT";
/// Whether user passwords may be reset.
pub const ROTATION_RESET_USERS: &str = "RESPONDER_ROTATION_RESET_USERS";
/// Days a new application password is valid.
pub const ROTATION_PASSWORD_DAYS: &str = "RESPONDER_ROTATION_PASSWORD_DAYS";
/// Polls of a certificate's pending creation within one run.
pub const ROTATION_CERTIFICATE_POLLS: &str = "RESPONDER_ROTATION_CERTIFICATE_POLLS";
/// Key Vault data-plane URLs by vault name.
pub const KEY_VAULT_ENDPOINTS: &str = "RESPONDER_KEY_VAULT_ENDPOINTS";

/// The settings of this module, for documentation and the drift tests.
pub const ROTATION_SETTINGS: &[Setting] = &[
    Setting { name: ROTATION_GRACE_SECONDS, default: "86400", description: "Seconds after a rotation before the old versions are disabled, old passwords removed and the second storage key regenerated (App Service Key Vault references refresh within a day)." },
    Setting { name: ROTATION_CREDENTIALS_VAULT, default: "", description: "Vault URL (https://{vault}.vault.azure.net) where reset_credentials stores a service principal's new password (secret `dr-{appId}`) and a user's temporary password. Empty: those resets become notices." },
    Setting { name: ROTATION_RESET_USERS, default: "false", description: "true: reset_credentials resets a user's password (forced change at next sign-in) and revokes their sessions; false: it sends the owner a notice." },
    Setting { name: ROTATION_PASSWORD_DAYS, default: "180", description: "Days a new application password is valid." },
    Setting { name: ROTATION_CERTIFICATE_POLLS, default: "10", description: "Polls of a certificate's pending creation in one run (honouring Retry-After); still pending after them, the poll is scheduled again." },
    Setting { name: KEY_VAULT_ENDPOINTS, default: "", description: "Comma-separated vault=URL pairs: data-plane URLs that replace https://{vault}.vault.azure.net (a private endpoint name, a local simulator)." },
];

/// The validated rotation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationSettings {
    /// See [`ROTATION_GRACE_SECONDS`].
    pub grace_seconds: i64,
    /// See [`ROTATION_CREDENTIALS_VAULT`]: a vault URL.
    pub credentials_vault: Option<String>,
    /// See [`ROTATION_RESET_USERS`].
    pub reset_users: bool,
    /// See [`ROTATION_PASSWORD_DAYS`].
    pub password_days: i64,
    /// See [`ROTATION_CERTIFICATE_POLLS`].
    pub certificate_polls: u32,
    /// See [`KEY_VAULT_ENDPOINTS`]: vault name (lower case) → URL.
    pub key_vault_endpoints: BTreeMap<String, String>,
}

impl Default for RotationSettings {
    fn default() -> Self {
        RotationSettings {
            grace_seconds: 86_400,
            credentials_vault: None,
            reset_users: false,
            password_days: 180,
            certificate_polls: 10,
            key_vault_endpoints: BTreeMap::new(),
        }
    }
}

impl RotationSettings {
    /// Reads the settings through `get` (trimmed, empty treated as unset).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let defaults = RotationSettings::default();
        let read = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str, default: i64, max: i64| -> Result<i64, Error> {
            match read(name) {
                None => Ok(default),
                Some(text) => text
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (0..=max).contains(n))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{name}: `{text}` is not a whole number from 0 to {max}"
                        ))
                    }),
            }
        };
        let credentials_vault = match read(ROTATION_CREDENTIALS_VAULT) {
            None => None,
            Some(url) if url.starts_with("https://") => Some(url.trim_end_matches('/').to_string()),
            Some(url) => {
                return Err(Error::Config(format!(
                    "{ROTATION_CREDENTIALS_VAULT}: `{url}` is not an https:// vault URL"
                )))
            }
        };
        let reset_users = match read(ROTATION_RESET_USERS).as_deref() {
            None => defaults.reset_users,
            Some(text) if text.eq_ignore_ascii_case("true") => true,
            Some(text) if text.eq_ignore_ascii_case("false") => false,
            Some(text) => {
                return Err(Error::Config(format!(
                    "{ROTATION_RESET_USERS}: `{text}` is not true or false"
                )))
            }
        };
        let mut key_vault_endpoints = BTreeMap::new();
        for pair in read(KEY_VAULT_ENDPOINTS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some((vault, url))
                    if !vault.trim().is_empty() && url.trim().starts_with("https://") =>
                {
                    key_vault_endpoints.insert(
                        vault.trim().to_ascii_lowercase(),
                        url.trim().trim_end_matches('/').to_string(),
                    );
                }
                _ => {
                    return Err(Error::Config(format!(
                        "{KEY_VAULT_ENDPOINTS}: `{pair}` is not vault=https://…"
                    )))
                }
            }
        }
        Ok(RotationSettings {
            grace_seconds: number(ROTATION_GRACE_SECONDS, defaults.grace_seconds, 90 * 86_400)?,
            credentials_vault,
            reset_users,
            password_days: number(ROTATION_PASSWORD_DAYS, defaults.password_days, 730)?,
            certificate_polls: number(
                ROTATION_CERTIFICATE_POLLS,
                i64::from(defaults.certificate_polls),
                1_000,
            )? as u32,
            key_vault_endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_hold_a_day_of_grace_and_no_user_resets() {
        let settings = RotationSettings::from_lookup(&lookup(&[])).expect("defaults");
        assert_eq!(settings, RotationSettings::default());
        assert_eq!(settings.grace_seconds, 86_400);
        assert!(!settings.reset_users);
    }

    #[test]
    fn values_are_read_and_a_bad_one_names_its_setting() {
        let settings = RotationSettings::from_lookup(&lookup(&[
            (ROTATION_GRACE_SECONDS, "60"),
            (ROTATION_RESET_USERS, "TRUE"),
            (
                KEY_VAULT_ENDPOINTS,
                "kv-a=https://127.0.0.1:1/, KV-B=https://127.0.0.1:2",
            ),
            (
                ROTATION_CREDENTIALS_VAULT,
                "https://kv-secops.vault.azure.net/",
            ),
        ]))
        .expect("valid");
        assert_eq!(settings.grace_seconds, 60);
        assert!(settings.reset_users);
        assert_eq!(settings.key_vault_endpoints["kv-b"], "https://127.0.0.1:2");
        assert_eq!(
            settings.credentials_vault.as_deref(),
            Some("https://kv-secops.vault.azure.net")
        );
        for (name, value) in [
            (ROTATION_GRACE_SECONDS, "-1"),
            (ROTATION_RESET_USERS, "yes"),
            (KEY_VAULT_ENDPOINTS, "kv-a"),
            (ROTATION_CREDENTIALS_VAULT, "kv-secops"),
        ] {
            let error = RotationSettings::from_lookup(&lookup(&[(name, value)]))
                .expect_err("invalid")
                .to_string();
            assert!(error.contains(name), "{error}");
        }
    }
}
