//! The rotation-queue executors (one file per action) and what they share: the Key Vault
//! connector and clock they run with, follow-up steps the worker schedules, the markers that
//! make a rotation idempotent, and the version binding that stops a rotation when someone else
//! rotated first.
//!
//! Every rotation writes a marker with its change: the task's message id in the new version's
//! tag `dr-message-id`, or a credential's display name. A redelivered task (a crash between the
//! write and the journal update) finds the marker and reports the rotation done instead of
//! rotating twice. Work that must wait for consumers to pick up the new value (disabling old
//! versions, removing old passwords, regenerating the second storage key) is not slept on: the
//! executor answers [`Applied::follow_up`], the worker schedules it, and calls
//! [`Executor::follow_up`] once `not_before` has passed.

pub mod automation;
pub mod certificate;
pub mod credentials;
pub mod disable;
pub mod generator;
pub mod key;
pub mod secret;
pub mod storage;
pub mod vm;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ExecutorContext, ExecutorError, ExecutorRegistry, RefusalReason};
use crate::azure::key_vault::{KeyVaultConnector, ObjectVersion, VaultClient};
use crate::config::rotation::RotationSettings;
use crate::domain::ids::{
    AzureResourceId, CertificateUri, Guid, KeyUri, SecretUri, VaultObjectUri,
};
use crate::domain::parameters::StorageKeyName;
use crate::domain::task::Task;

/// The tag on a version a rotation wrote: the task's message id.
pub const MARKER_TAG: &str = "dr-message-id";
/// The tag on a new version naming the version it replaces.
pub const REPLACES_TAG: &str = "dr-replaces";
/// The tag written on a key's current version before `rotate` (whose new version carries no
/// tags of the request): a redelivery that finds it knows the rotate may have happened.
pub const ROTATING_TAG: &str = "dr-rotating";
/// The tag on a version a `disable_secret` task disabled.
pub const DISABLED_BY_TAG: &str = "dr-disabled-by";

/// Registers every rotation executor: one line per action.
pub fn register(registry: &mut ExecutorRegistry) {
    registry.register(Arc::new(secret::RotateSecret));
    registry.register(Arc::new(disable::DisableSecret));
    registry.register(Arc::new(key::RotateKey));
    registry.register(Arc::new(certificate::RotateCertificate));
    registry.register(Arc::new(storage::RotateStorageKeys));
    registry.register(Arc::new(credentials::ResetCredentials));
    registry.register(Arc::new(automation::RotateAutomationCredentials));
    registry.register(Arc::new(vm::ChangeVmPasswords));
}

/// Unix seconds now, from a clock the tests control.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(|| {
            azure_core::time::OffsetDateTime::now_utc().unix_timestamp()
        }))
    }

    /// A clock reading `now` (tests move it).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// Unix seconds.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// What the rotation executors get besides the Azure clients: the Key Vault connector, their
/// settings and the clock.
#[derive(Clone, Debug, Default)]
pub struct RotationContext {
    /// The Key Vault data-plane clients (absent: rotation tasks fail permanently, saying so).
    pub key_vault: Option<KeyVaultConnector>,
    /// Grace window, credentials vault, what the policy allows.
    pub settings: RotationSettings,
    /// Now.
    pub clock: Clock,
}

impl RotationContext {
    /// A context with this connector and settings, on the system clock.
    pub fn new(key_vault: KeyVaultConnector, settings: RotationSettings) -> Self {
        RotationContext {
            key_vault: Some(key_vault),
            settings,
            clock: Clock::system(),
        }
    }

    /// The context the settings describe: Key Vault clients with `credential`, trusting
    /// `extra_root_pem` (the Azure clients' extra root certificate) when given, reaching the
    /// vaults of [`RotationSettings::key_vault_endpoints`] at their configured URLs (where the
    /// challenge's resource is not checked against the host).
    pub fn from_settings(
        settings: RotationSettings,
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
        extra_root_pem: Option<&str>,
    ) -> Result<Self, crate::azure::AzureError> {
        let mut connector = KeyVaultConnector::new(credential);
        if let Some(pem) = extra_root_pem {
            connector = connector.trusting_certificate(pem)?;
        }
        for (vault, url) in &settings.key_vault_endpoints {
            // A vault reached at another address cannot match its challenge's resource.
            connector = connector
                .with_endpoint(vault, url)
                .without_challenge_resource_check();
        }
        Ok(RotationContext::new(connector, settings))
    }

    /// The same, on another clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// Work a rotation leaves for later, as data the worker schedules (it survives restarts in
/// the journal): perform `step` through [`super::Executor::follow_up`] at or after `not_before`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// Unix seconds before which the step must not run (the grace window's end).
    pub not_before: i64,
    /// What to do then.
    pub step: FollowUpStep,
}

/// The follow-up steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum FollowUpStep {
    /// Disable these versions of a secret, if `replacement` is still its current, enabled version.
    DisableSecretVersions {
        /// The secret.
        secret: SecretUri,
        /// The versions to disable.
        versions: Vec<String>,
        /// The version consumers moved to (`None`: none existed yet; checked again then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replacement: Option<String>,
    },
    /// Disable these versions of a key (after dependants re-wrapped with the new one).
    DisableKeyVersions {
        /// The key.
        key: KeyUri,
        /// The versions to disable.
        versions: Vec<String>,
        /// The version that replaced them.
        replacement: String,
    },
    /// Poll a certificate's pending creation again.
    PollCertificate {
        /// The certificate.
        certificate: CertificateUri,
    },
    /// Regenerate the second storage account key, once consumers moved to the first.
    RegenerateStorageKey {
        /// The storage account.
        account: AzureResourceId,
        /// The key.
        key: StorageKeyName,
        /// Its `keyCreationTime` as saved before the task began (a later one means done).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_before: Option<String>,
    },
    /// Remove an application's (or service principal's) old passwords.
    RemovePasswords {
        /// The Graph path of the object holding them (`/applications/{id}` or `/servicePrincipals/{id}`).
        owner: String,
        /// The `keyId`s to remove.
        key_ids: Vec<Guid>,
        /// The password that replaced them (`keyId`): kept whatever happens.
        replacement: Guid,
    },
}

/// The Key Vault connector, or a permanent failure saying it is not configured.
pub(crate) fn connector(ctx: &ExecutorContext) -> Result<&KeyVaultConnector, ExecutorError> {
    ctx.rotation.key_vault.as_ref().ok_or_else(|| {
        ExecutorError::Permanent(
            "no Key Vault clients are configured for the rotation executors".into(),
        )
    })
}

/// The clients of the vault an object lives in.
pub(crate) fn vault_of(
    ctx: &ExecutorContext,
    object: &VaultObjectUri,
) -> Result<VaultClient, ExecutorError> {
    Ok(connector(ctx)?.vault(object)?)
}

/// The newest version (the one a version-less read returns), or "not found".
pub(crate) fn current(
    versions: &[ObjectVersion],
    what: &str,
) -> Result<ObjectVersion, ExecutorError> {
    versions.last().cloned().ok_or_else(|| {
        ExecutorError::refused(
            RefusalReason::TargetNotFound,
            format!("{what} has no versions"),
        )
    })
}

/// The version this task already wrote (its marker), if any.
pub(crate) fn marked<'v>(versions: &'v [ObjectVersion], task: &Task) -> Option<&'v ObjectVersion> {
    versions
        .iter()
        .rev()
        .find(|v| v.tag(MARKER_TAG) == Some(task.message_id.as_str()))
}

/// The preview of a rotation a redelivery finds done (a version carries the task's marker):
/// nothing more to send. `kind` names the object in the prior state (`secret`, `key`,
/// `certificate`), `done_as` what was done to it (`rotated`, `renewed`).
pub(crate) fn already_done(
    kind: &str,
    object: &str,
    done_as: &str,
    done: &ObjectVersion,
    leases: Vec<String>,
) -> super::Preview {
    super::Preview {
        change: super::Change::new(
            format!(
                "{object} was already {done_as} by this task: version {} carries its marker",
                done.version
            ),
            Vec::new(),
        ),
        prior_state: serde_json::json!({
            kind: object,
            "rotated_version": done.version,
            "current_version": done.tag(REPLACES_TAG),
        }),
        leases,
        subscriptions: Vec::new(),
    }
}

/// Unix seconds of an RFC 3339 time.
pub(crate) fn unix_of(text: &str) -> Option<i64> {
    azure_core::time::parse_rfc3339(text)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// RFC 3339 of Unix seconds.
pub(crate) fn rfc3339_of(unix: i64) -> String {
    azure_core::time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| azure_core::time::to_rfc3339(&t))
        .unwrap_or_else(|_| unix.to_string())
}

/// Version binding: the current version must be the one the alert saw. It is when the alert
/// lists it among the versions read, or when it was created before the alert's window ended;
/// a version created after that was written by someone else since, and the task stops.
pub(crate) fn bound_to_alert(
    current: &ObjectVersion,
    versions_read: &[String],
    task: &Task,
    what: &str,
) -> Result<(), ExecutorError> {
    if versions_read
        .iter()
        .any(|read| read.eq_ignore_ascii_case(&current.version))
    {
        return Ok(());
    }
    let window_end = task
        .activity
        .window
        .as_ref()
        .and_then(|w| w.end.as_deref().or(w.start.as_deref()))
        .and_then(unix_of);
    match (window_end, current.created) {
        (Some(end), Some(created)) if created > end => Err(ExecutorError::refused(
            RefusalReason::VersionChanged,
            format!(
                "{what}: its current version {} was created at {}, after the alert's window ended at {}; someone rotated it since the alert, so this task stops (check that the value also changed at its source)",
                current.version,
                rfc3339_of(created),
                rfc3339_of(end)
            ),
        )),
        _ => Ok(()),
    }
}

/// Apply's version check: the current version is still the one the preview bound to.
pub(crate) fn still_current(
    current: &ObjectVersion,
    previewed: &str,
    what: &str,
) -> Result<(), ExecutorError> {
    if current.version.eq_ignore_ascii_case(previewed) {
        Ok(())
    } else {
        Err(ExecutorError::conflict(
            what,
            format!(
                "the current version is now {}, not {previewed} as previewed: someone rotated it since; nothing was written",
                current.version
            ),
        ))
    }
}

/// A version's tags without the responder's own markers (what a new version inherits).
pub(crate) fn carried_tags(version: &ObjectVersion) -> BTreeMap<String, String> {
    version
        .tags
        .iter()
        .filter(|(name, _)| {
            ![MARKER_TAG, REPLACES_TAG, ROTATING_TAG, DISABLED_BY_TAG].contains(&name.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The lease key of a vault object (lower-case, version-less URI).
/// The listing of a vault object's versions: an object that does not exist is refused as
/// `target_not_found`, any other failure keeps its own kind.
pub(crate) fn not_found_refused(
    object: &str,
) -> impl FnOnce(crate::azure::AzureError) -> ExecutorError + '_ {
    move |error| {
        if error.is_not_found() {
            ExecutorError::refused(
                RefusalReason::TargetNotFound,
                format!("{object} does not exist"),
            )
        } else {
            error.into()
        }
    }
}

pub(crate) fn lease_of(object: &VaultObjectUri) -> String {
    object.without_version().as_str().to_ascii_lowercase()
}

/// Reads a field of the preview's saved state.
pub(crate) fn saved<'v>(
    prior: &'v serde_json::Value,
    field: &str,
) -> Result<&'v serde_json::Value, ExecutorError> {
    prior.get(field).ok_or_else(|| {
        ExecutorError::Permanent(format!(
            "the preview's saved state has no `{field}`: it was made by another version of the responder; preview again"
        ))
    })
}

/// A saved string field.
pub(crate) fn saved_str<'v>(
    prior: &'v serde_json::Value,
    field: &str,
) -> Result<&'v str, ExecutorError> {
    saved(prior, field)?.as_str().ok_or_else(|| {
        ExecutorError::Permanent(format!("the preview's saved `{field}` is not text"))
    })
}

/// The wrong parameters reached an executor: a bug in the worker's dispatch, never retried.
pub(crate) fn wrong_parameters(expected: &str) -> ExecutorError {
    ExecutorError::Permanent(format!("the task's parameters are not those of {expected}"))
}

/// A follow-up that is not this executor's.
pub(crate) fn foreign_step(step: &FollowUpStep, executor: &str) -> ExecutorError {
    ExecutorError::Permanent(format!(
        "{executor} has no follow-up step {}",
        serde_json::to_value(step)
            .ok()
            .and_then(|v| v.get("step").and_then(|s| s.as_str().map(str::to_string)))
            .unwrap_or_default()
    ))
}

/// A follow-up called before its time: retry when the window ends.
pub(crate) fn not_yet(follow_up: &FollowUp, now: i64) -> Result<(), ExecutorError> {
    if now >= follow_up.not_before {
        return Ok(());
    }
    Err(ExecutorError::Retryable {
        reason: format!(
            "the grace window ends at {}; the follow-up waits until then",
            rfc3339_of(follow_up.not_before)
        ),
        retry_after: Some(std::time::Duration::from_secs(
            (follow_up.not_before - now).unsigned_abs(),
        )),
    })
}

/// Who read the object, for notices.
pub(crate) fn reader_of(task: &Task) -> String {
    task.activity
        .principal
        .as_ref()
        .map(|p| p.target().to_string())
        .unwrap_or_else(|| "an unfamiliar principal".into())
}

/// The alert's window, for notices.
pub(crate) fn window_of(task: &Task) -> String {
    match task.activity.window.as_ref() {
        Some(w) => format!(
            "between {} and {}",
            w.start.as_deref().unwrap_or("?"),
            w.end.as_deref().unwrap_or("?")
        ),
        None => "in the alert's window".into(),
    }
}
