//! Which generator changes a secret's value at its source, read from the secret's `contentType` or tags, and the random generator itself.
//!
//! A new vault version revokes nothing unless the value also changed where it is checked, so a
//! secret is rotated end to end only when it says where its value comes from:
//!
//! | tag `generator` (or `dr-generator`), or `contentType` | source |
//! |---|---|
//! | `random` (optionally `random:{length}`) | nothing outside the vault: a new random value (the consumer reads the vault) |
//! | `storage-key:{storage account id}#key1` / `#key2` | that storage account key, regenerated |
//! | `application-password:{application object id}` | a new password of that Entra application |
//!
//! Any other secret gets a [`Generator::None`], and the task becomes a notice to its owner.

use serde::{Deserialize, Serialize};

use crate::azure::key_vault::{ObjectVersion, SecretValue};
use crate::domain::ids::{AzureResourceId, Guid};
use crate::domain::parameters::StorageKeyName;

/// The tags that may name a generator, in the order they are read.
pub const GENERATOR_TAGS: &[&str] = &["dr-generator", "generator"];

/// Length of a random value when the secret does not ask for one.
pub const DEFAULT_RANDOM_LENGTH: usize = 32;

/// Shortest and longest random values a secret may ask for.
pub const RANDOM_LENGTHS: std::ops::RangeInclusive<usize> = 16..=256;

/// What changes a secret's value at its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Generator {
    /// A random value of this many characters (URL-safe base64 of OS randomness).
    Random {
        /// Characters.
        length: usize,
    },
    /// A storage account key, regenerated with `regenerateKey`.
    StorageKey {
        /// The storage account.
        account: AzureResourceId,
        /// The key.
        key: StorageKeyName,
    },
    /// A new password of an Entra application (`addPassword`).
    ApplicationPassword {
        /// The application's object id.
        application: Guid,
    },
    /// No generator: the owner must change the value at its source.
    None {
        /// What the secret says about itself (its content type), for the notice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
    },
}

/// A generator named but not understood: the reason, for the owner's notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratorError(pub String);

impl Generator {
    /// The generator a secret version names in its tags, else its content type.
    pub fn of(version: &ObjectVersion) -> Result<Generator, GeneratorError> {
        let named = GENERATOR_TAGS
            .iter()
            .find_map(|tag| version.tag(tag))
            .map(str::trim)
            .filter(|text| !text.is_empty());
        if let Some(text) = named {
            return Generator::parse(text)?.ok_or_else(|| {
                GeneratorError(format!(
                    "the tag names the generator `{text}`, which the responder does not know"
                ))
            });
        }
        match version.content_type.as_deref().map(str::trim) {
            Some(text) => Ok(Generator::parse(text)?.unwrap_or(Generator::None {
                content_type: Some(text.to_string()),
            })),
            None => Ok(Generator::None { content_type: None }),
        }
    }

    /// Parses `random[:n]`, `storage-key:{id}#keyN`, `application-password:{guid}`; `None`
    /// for anything else (a plain content type such as `text/plain`).
    fn parse(text: &str) -> Result<Option<Generator>, GeneratorError> {
        let (kind, argument) = match text.split_once(':') {
            Some((kind, argument)) => (kind.trim(), Some(argument.trim())),
            None => (text.trim(), None),
        };
        match kind.to_ascii_lowercase().as_str() {
            "random" => {
                let length = match argument {
                    None | Some("") => DEFAULT_RANDOM_LENGTH,
                    Some(n) => n
                        .parse::<usize>()
                        .ok()
                        .filter(|n| RANDOM_LENGTHS.contains(n))
                        .ok_or_else(|| {
                            GeneratorError(format!(
                                "`{text}`: a random length must be a number from {} to {}",
                                RANDOM_LENGTHS.start(),
                                RANDOM_LENGTHS.end()
                            ))
                        })?,
                };
                Ok(Some(Generator::Random { length }))
            }
            "storage-key" => {
                let argument = argument.unwrap_or_default();
                let (account, key) = argument.split_once('#').ok_or_else(|| {
                    GeneratorError(format!(
                        "`{text}`: write storage-key:{{storage account id}}#key1 or #key2"
                    ))
                })?;
                let account = AzureResourceId::parse(account)
                    .ok()
                    .filter(|id| id.is_type("Microsoft.Storage/storageAccounts"))
                    .ok_or_else(|| {
                        GeneratorError(format!("`{text}`: `{account}` is not a storage account id"))
                    })?;
                let key = match key.trim().to_ascii_lowercase().as_str() {
                    "key1" => StorageKeyName::Key1,
                    "key2" => StorageKeyName::Key2,
                    other => {
                        return Err(GeneratorError(format!(
                            "`{text}`: `{other}` is not key1 or key2"
                        )))
                    }
                };
                Ok(Some(Generator::StorageKey { account, key }))
            }
            "application-password" => {
                let argument = argument.unwrap_or_default();
                let application = Guid::parse(argument).map_err(|_| {
                    GeneratorError(format!(
                        "`{text}`: `{argument}` is not an application object id"
                    ))
                })?;
                Ok(Some(Generator::ApplicationPassword { application }))
            }
            _ => Ok(None),
        }
    }

    /// How a preview names the new value's origin (never the value).
    pub fn describe(&self) -> String {
        match self {
            Generator::Random { length } => format!("a new random value of {length} characters"),
            Generator::StorageKey { account, key } => format!(
                "the regenerated {} of {}",
                storage_key_name(*key),
                account.as_str()
            ),
            Generator::ApplicationPassword { application } => format!(
                "a new password of the Entra application {}",
                application.as_str()
            ),
            Generator::None { .. } => "nothing: no generator is named".into(),
        }
    }
}

/// `key1` / `key2`.
pub fn storage_key_name(key: StorageKeyName) -> &'static str {
    match key {
        StorageKeyName::Key1 => "key1",
        StorageKeyName::Key2 => "key2",
    }
}

/// A random value of `length` characters from the operating system's generator (URL-safe
/// base64, so it fits connection strings and environment variables unescaped).
pub fn random_value(length: usize) -> Result<SecretValue, getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = vec![0u8; length.div_ceil(4) * 3];
    getrandom::fill(&mut bytes)?;
    let mut text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
    text.truncate(length);
    Ok(SecretValue::new(text))
}

/// The new value of a secret whose current value is `current` and whose source now holds
/// `source_value`: a connection string keeps everything but its `AccountKey=`/`Password=`
/// field; any other value is replaced whole.
pub fn substitute(current: &SecretValue, field: &str, source_value: &SecretValue) -> SecretValue {
    let text = current.expose();
    let prefix = format!("{field}=");
    if text.split(';').any(|part| {
        part.trim_start()
            .to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase())
    }) {
        let parts: Vec<String> = text
            .split(';')
            .map(|part| {
                if part
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with(&prefix.to_ascii_lowercase())
                {
                    format!("{prefix}{}", source_value.expose())
                } else {
                    part.to_string()
                }
            })
            .collect();
        SecretValue::new(parts.join(";"))
    } else {
        source_value.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn version(content_type: Option<&str>, tags: &[(&str, &str)]) -> ObjectVersion {
        ObjectVersion {
            version: "v".into(),
            enabled: true,
            content_type: content_type.map(str::to_string),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        }
    }

    const ACCOUNT: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st";

    #[test]
    fn a_tag_names_the_generator_before_the_content_type() {
        let tagged = version(Some("text/plain"), &[("generator", "random")]);
        assert_eq!(
            Generator::of(&tagged),
            Ok(Generator::Random {
                length: DEFAULT_RANDOM_LENGTH
            })
        );
        let storage = version(Some(&format!("storage-key:{ACCOUNT}#key2")), &[]);
        assert!(matches!(
            Generator::of(&storage),
            Ok(Generator::StorageKey {
                key: StorageKeyName::Key2,
                ..
            })
        ));
        let app = version(
            None,
            &[(
                "dr-generator",
                "application-password:4d3c2b1a-0f9e-48d7-a6c5-b4a392817065",
            )],
        );
        assert!(matches!(
            Generator::of(&app),
            Ok(Generator::ApplicationPassword { .. })
        ));
    }

    #[test]
    fn a_plain_secret_has_no_generator_and_a_wrong_one_says_why() {
        assert_eq!(
            Generator::of(&version(Some("text/plain"), &[])),
            Ok(Generator::None {
                content_type: Some("text/plain".into())
            })
        );
        let wrong = Generator::of(&version(None, &[("generator", "storage-key:/nope#key1")]));
        assert!(wrong.is_err_and(|e| e.0.contains("not a storage account id")));
        let unknown = Generator::of(&version(None, &[("generator", "sql-password")]));
        assert!(unknown.is_err_and(|e| e.0.contains("does not know")));
        let short = Generator::of(&version(None, &[("generator", "random:4")]));
        assert!(short.is_err());
    }

    #[test]
    fn random_values_have_the_length_asked_and_differ() {
        let a = random_value(32).expect("random");
        let b = random_value(32).expect("random");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a
            .expose()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn a_connection_string_keeps_all_but_its_key() {
        let current = SecretValue::new("DefaultEndpointsProtocol=https;AccountName=st;AccountKey=old;EndpointSuffix=core.windows.net");
        let new = substitute(&current, "AccountKey", &SecretValue::new("new"));
        assert_eq!(
            new.expose(),
            "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=new;EndpointSuffix=core.windows.net"
        );
        let bare = substitute(
            &SecretValue::new("old"),
            "AccountKey",
            &SecretValue::new("new"),
        );
        assert_eq!(bare.expose(), "new");
    }
}
