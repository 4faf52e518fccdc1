//! The deployed journal: JSON blobs in a container of the function app's own storage account,
//! reached with its managed identity through the official `azure_storage_blob` client.
//!
//! Layout: `tasks/<message id>.json` holds an entry and is replaced only with `If-Match` on
//! the ETag read (a lost race answers 412 and writes nothing); `alerts/<sha256 of the alert
//! id>.json` lists an alert's message ids (kept the same way); `leases/<sha256 of the
//! resource>` is an empty blob whose Blob lease (15 to 60 seconds) serialises work on one
//! resource across every instance.
//!
//! The sweeper's queries read small marker blobs instead of every entry: `index/state/<state>/
//! <message id>` exists while an entry is in a state the sweeper acts on (pending approval,
//! approved), `index/due/<Unix second, 12 digits>/<message id>` while a follow-up waits, so a
//! listing of `index/due/` comes in due order and stops at the first one not due. A marker
//! is written before the entry that needs it and removed after the entry that no longer does,
//! so an entry is never without its marker; a marker left over by a crash is recognised on
//! reading (the entry no longer matches it) and deleted once it is older than
//! [`STALE_MARKER_AGE`] (younger, it may belong to a write still under way).

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Etag, RequestContent, StatusCode, Url};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientDeleteOptions, BlobClientDownloadOptions,
    BlobClientUploadOptions, BlobContainerClientListBlobsOptions,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{JournalEntry, JournalError, JournalStore, Lease, TaskState, Version, INDEXED_STATES};
use crate::domain::MessageId;

/// Where the deployed journal lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobJournalSettings {
    /// The Blob service endpoint of the account, e.g. `https://acct.blob.core.windows.net/`.
    pub endpoint: Url,
    /// The container (created when missing).
    pub container: String,
    /// Client id of a user-assigned managed identity; `None`: the system-assigned identity.
    pub client_id: Option<String>,
}

impl BlobJournalSettings {
    /// The container's URL.
    pub fn container_url(&self) -> Result<Url, JournalError> {
        let mut url = self.endpoint.clone();
        let path = format!("{}/{}", url.path().trim_end_matches('/'), self.container);
        url.set_path(&path);
        Ok(url)
    }
}

/// The journal in Azure Blob storage.
pub struct BlobJournal {
    container: BlobContainerClient,
    url: Url,
    settings: BlobJournalSettings,
}

impl std::fmt::Debug for BlobJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobJournal")
            .field("container", &self.url.as_str())
            .finish()
    }
}

/// An alert's index blob: the message ids of its tasks, in the order received.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AlertIndex {
    system_alert_id: String,
    message_ids: Vec<MessageId>,
}

/// How many times an index update re-reads after losing a race.
const INDEX_ATTEMPTS: usize = 16;

/// How old a marker whose entry no longer matches it must be before a reader deletes it: a
/// younger one may have been written by a writer whose entry write has not landed yet.
const STALE_MARKER_AGE: Duration = Duration::from_secs(10 * 60);

/// The marker blobs an entry needs: its state's (when the sweeper acts on it) and its due
/// follow-up's.
fn markers(entry: &JournalEntry) -> Vec<String> {
    let mut names = Vec::new();
    if INDEXED_STATES.contains(&entry.state) {
        names.push(state_marker(entry.state, &entry.message_id));
    }
    if let Some(due) = entry.follow_up_due() {
        names.push(due_marker(due, &entry.message_id));
    }
    names
}

fn state_prefix(state: TaskState) -> String {
    format!("index/state/{}/", state.as_str())
}

fn state_marker(state: TaskState, id: &MessageId) -> String {
    format!("{}{}", state_prefix(state), id.as_str())
}

const DUE_PREFIX: &str = "index/due/";

fn due_marker(due: i64, id: &MessageId) -> String {
    // Zero-padded so names sort in due order (Unix seconds stay below 10^12 until year 33658).
    format!("{DUE_PREFIX}{:012}/{}", due.max(0), id.as_str())
}

/// A marker found by a listing.
struct Marker {
    name: String,
    etag: Option<Etag>,
    last_modified: Option<OffsetDateTime>,
}

impl Marker {
    /// The message id at the end of its name.
    fn message_id(&self) -> Option<MessageId> {
        let id = self.name.rsplit('/').next()?;
        serde_json::from_value(serde_json::Value::String(id.to_string())).ok()
    }

    fn is_stale_enough(&self, now: OffsetDateTime) -> bool {
        self.last_modified
            .is_some_and(|at| now - at > STALE_MARKER_AGE)
    }
}

impl BlobJournal {
    /// A journal on `settings`' container, authenticating with `credential`. `client_options`
    /// replace the defaults (tests pass a transport that trusts a local certificate).
    pub fn new(
        settings: &BlobJournalSettings,
        credential: Arc<dyn TokenCredential>,
        client_options: Option<ClientOptions>,
    ) -> Result<Self, JournalError> {
        crate::tls::install_crypto_provider();
        let url = settings.container_url()?;
        let options = BlobContainerClientOptions {
            client_options: client_options.unwrap_or_default(),
            ..Default::default()
        };
        let container = BlobContainerClient::new(url.clone(), Some(credential), Some(options))
            .map_err(|err| JournalError::Storage(format!("blob client for {url}: {err}")))?;
        Ok(BlobJournal {
            container,
            url,
            settings: settings.clone(),
        })
    }

    /// Where it lives.
    pub fn settings(&self) -> &BlobJournalSettings {
        &self.settings
    }

    /// Creates the container when it does not exist yet (deployments create it in Bicep;
    /// this covers local runs and tests).
    pub async fn ensure_container(&self) -> Result<(), JournalError> {
        match self.container.create(None).await {
            Ok(_) => Ok(()),
            Err(err) if err.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(err) => Err(storage("create the journal container", err)),
        }
    }

    fn task_blob(id: &MessageId) -> String {
        format!("tasks/{}.json", id.as_str())
    }

    fn alert_blob(system_alert_id: &str) -> String {
        format!(
            "alerts/{}.json",
            hex::encode(Sha256::digest(system_alert_id.as_bytes()))
        )
    }

    fn lease_blob(resource: &str) -> String {
        format!(
            "leases/{}",
            hex::encode(Sha256::digest(resource.as_bytes()))
        )
    }

    /// Reads a blob and its ETag; `None` when it does not exist.
    async fn read(&self, name: &str) -> Result<Option<(Vec<u8>, Etag)>, JournalError> {
        let blob = self.container.blob_client(name);
        let options = BlobClientDownloadOptions {
            // One request: entries are small, and the ETag must be the one of these bytes.
            parallel: std::num::NonZero::new(1),
            ..Default::default()
        };
        match blob.download(Some(options)).await {
            Ok(response) => {
                let etag = response
                    .properties
                    .etag
                    .clone()
                    .ok_or_else(|| JournalError::Storage(format!("{name}: no ETag")))?;
                let body = response
                    .body
                    .collect()
                    .await
                    .map_err(|err| storage("read a journal blob", err))?;
                Ok(Some((body.to_vec(), etag)))
            }
            Err(err) if err.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(err) => Err(storage("read a journal blob", err)),
        }
    }

    /// Writes a blob if it is still at `expected` (`None`: only if it does not exist).
    /// `Ok(None)` when the condition failed.
    async fn write(
        &self,
        name: &str,
        bytes: Vec<u8>,
        expected: Option<&Etag>,
    ) -> Result<Option<Etag>, JournalError> {
        let blob = self.container.blob_client(name);
        let options = BlobClientUploadOptions {
            if_match: expected.cloned(),
            if_none_match: expected.is_none().then(|| Etag::from("*")),
            blob_content_type: Some("application/json".into()),
            ..Default::default()
        };
        match blob
            .upload(RequestContent::from(bytes), Some(options))
            .await
        {
            Ok(result) => Ok(Some(result.etag.ok_or_else(|| {
                JournalError::Storage(format!("{name}: the upload returned no ETag"))
            })?)),
            Err(err)
                if matches!(
                    err.http_status(),
                    Some(StatusCode::PreconditionFailed | StatusCode::Conflict)
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(storage("write a journal blob", err)),
        }
    }

    /// Writes an (empty) marker blob; writing it again is harmless.
    async fn put_marker(&self, name: &str) -> Result<(), JournalError> {
        let options = BlobClientUploadOptions {
            blob_content_type: Some("application/octet-stream".into()),
            ..Default::default()
        };
        self.container
            .blob_client(name)
            .upload(RequestContent::from(Vec::new()), Some(options))
            .await
            .map(|_| ())
            .map_err(|err| storage("write a journal marker", err))
    }

    /// Deletes a marker (only at `etag` when given); one already gone or rewritten since is
    /// left alone.
    async fn delete_marker(&self, name: &str, etag: Option<Etag>) -> Result<(), JournalError> {
        let options = BlobClientDeleteOptions {
            if_match: etag,
            ..Default::default()
        };
        match self.container.blob_client(name).delete(Some(options)).await {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.http_status(),
                    Some(StatusCode::NotFound | StatusCode::PreconditionFailed)
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(storage("delete a journal marker", err)),
        }
    }

    /// Every marker under `prefix`, in name order.
    async fn list_markers(&self, prefix: &str) -> Result<Vec<Marker>, JournalError> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_string()),
            ..Default::default()
        };
        let mut blobs = self
            .container
            .list_blobs(Some(options))
            .map_err(|err| storage("list journal markers", err))?;
        let mut markers = Vec::new();
        while let Some(blob) = blobs
            .try_next()
            .await
            .map_err(|err| storage("list journal markers", err))?
        {
            if let Some(name) = blob.name {
                let properties = blob.properties;
                markers.push(Marker {
                    name,
                    etag: properties.as_ref().and_then(|p| p.etag.clone()),
                    last_modified: properties.as_ref().and_then(|p| p.last_modified),
                });
            }
        }
        Ok(markers)
    }

    /// A marker whose entry no longer matches it: deleted when old enough (see
    /// [`STALE_MARKER_AGE`]).
    async fn drop_stale(&self, marker: Marker) -> Result<(), JournalError> {
        if marker.is_stale_enough(OffsetDateTime::now_utc()) {
            tracing::info!(marker = %marker.name, "journal: stale marker deleted");
            self.delete_marker(&marker.name, marker.etag).await?;
        }
        Ok(())
    }

    async fn add_to_alert_index(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let name = Self::alert_blob(&entry.system_alert_id);
        for _ in 0..INDEX_ATTEMPTS {
            let (mut index, etag) = match self.read(&name).await? {
                Some((bytes, etag)) => (decode::<AlertIndex>(&bytes, &name)?, Some(etag)),
                None => (
                    AlertIndex {
                        system_alert_id: entry.system_alert_id.clone(),
                        message_ids: Vec::new(),
                    },
                    None,
                ),
            };
            if index.message_ids.contains(&entry.message_id) {
                return Ok(());
            }
            index.message_ids.push(entry.message_id.clone());
            let bytes = encode(&index)?;
            if self.write(&name, bytes, etag.as_ref()).await?.is_some() {
                return Ok(());
            }
        }
        Err(JournalError::Storage(format!(
            "the index of alert {} kept changing",
            entry.system_alert_id
        )))
    }
}

fn storage(what: &str, err: azure_core::Error) -> JournalError {
    match err.http_status() {
        Some(status) => JournalError::Storage(format!("cannot {what}: HTTP {status}: {err}")),
        None => JournalError::Storage(format!("cannot {what}: {err}")),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(value).map_err(|err| JournalError::Storage(format!("cannot encode: {err}")))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], name: &str) -> Result<T, JournalError> {
    serde_json::from_slice(bytes)
        .map_err(|err| JournalError::Storage(format!("unreadable journal blob {name}: {err}")))
}

/// Blob leases last 15 to 60 seconds (or forever, which a crashed holder would never give back).
fn blob_lease_seconds(ttl: Duration) -> Result<i32, JournalError> {
    let seconds = ttl.as_secs();
    if ttl.subsec_nanos() == 0 && (15..=60).contains(&seconds) {
        Ok(seconds as i32)
    } else {
        Err(JournalError::InvalidLease(format!(
            "Blob leases last 15 to 60 whole seconds, not {ttl:?}"
        )))
    }
}

#[async_trait::async_trait]
impl JournalStore for BlobJournal {
    fn name(&self) -> &'static str {
        "blob"
    }

    async fn create(&self, entry: &JournalEntry) -> Result<Option<Version>, JournalError> {
        // The index first: an entry is never without its alert's index line, even if this
        // instance dies between the two writes (a redelivery completes the pair).
        self.add_to_alert_index(entry).await?;
        for marker in markers(entry) {
            self.put_marker(&marker).await?;
        }
        let name = Self::task_blob(&entry.message_id);
        Ok(self
            .write(&name, encode(entry)?, None)
            .await?
            .map(|etag| Version(etag.to_string())))
    }

    async fn load(&self, id: &MessageId) -> Result<Option<(JournalEntry, Version)>, JournalError> {
        let name = Self::task_blob(id);
        match self.read(&name).await? {
            Some((bytes, etag)) => Ok(Some((decode(&bytes, &name)?, Version(etag.to_string())))),
            None => Ok(None),
        }
    }

    async fn replace(
        &self,
        entry: &JournalEntry,
        expected: &Version,
    ) -> Result<Option<Version>, JournalError> {
        let name = Self::task_blob(&entry.message_id);
        // The entry being replaced says which markers to remove once the write landed. One
        // read costs less than leaving every marker to the readers' stale-marker cleanup.
        let Some((bytes, current)) = self.read(&name).await? else {
            return Ok(None);
        };
        if current.to_string() != expected.0 {
            // Changed since the caller read it: the conditional write would be refused.
            return Ok(None);
        }
        let before: JournalEntry = decode(&bytes, &name)?;
        let (old, new) = (markers(&before), markers(entry));
        for marker in new.iter().filter(|m| !old.contains(m)) {
            self.put_marker(marker).await?;
        }
        let etag = Etag::from(expected.0.clone());
        let written = self.write(&name, encode(entry)?, Some(&etag)).await?;
        if written.is_some() {
            for marker in old.iter().filter(|m| !new.contains(m)) {
                self.delete_marker(marker, None).await?;
            }
        }
        Ok(written.map(|etag| Version(etag.to_string())))
    }

    async fn for_alert(&self, system_alert_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        let name = Self::alert_blob(system_alert_id);
        let Some((bytes, _)) = self.read(&name).await? else {
            return Ok(Vec::new());
        };
        let index: AlertIndex = decode(&bytes, &name)?;
        let mut entries = Vec::with_capacity(index.message_ids.len());
        for id in &index.message_ids {
            if let Some((entry, _)) = self.load(id).await? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    async fn recent(&self, limit: usize) -> Result<Vec<JournalEntry>, JournalError> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some("tasks/".into()),
            ..Default::default()
        };
        let mut names = Vec::new();
        let mut blobs = self
            .container
            .list_blobs(Some(options))
            .map_err(|err| storage("list the journal", err))?;
        while let Some(blob) = blobs
            .try_next()
            .await
            .map_err(|err| storage("list the journal", err))?
        {
            if let Some(name) = blob.name {
                names.push(name);
            }
        }
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            if let Some((bytes, _)) = self.read(&name).await? {
                entries.push(decode::<JournalEntry>(&bytes, &name)?);
            }
        }
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.updated_at));
        entries.truncate(limit);
        Ok(entries)
    }

    async fn in_state(&self, state: TaskState) -> Result<Vec<JournalEntry>, JournalError> {
        if !INDEXED_STATES.contains(&state) {
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        for marker in self.list_markers(&state_prefix(state)).await? {
            let Some(id) = marker.message_id() else {
                continue;
            };
            match self.load(&id).await? {
                Some((entry, _)) if entry.state == state => entries.push(entry),
                _ => self.drop_stale(marker).await?,
            }
        }
        entries.sort_by(|a, b| {
            (a.updated_at, a.message_id.as_str()).cmp(&(b.updated_at, b.message_id.as_str()))
        });
        Ok(entries)
    }

    async fn follow_ups_due(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let mut entries = Vec::new();
        for marker in self.list_markers(DUE_PREFIX).await? {
            if entries.len() >= limit {
                break;
            }
            let due = marker
                .name
                .strip_prefix(DUE_PREFIX)
                .and_then(|rest| rest.split('/').next())
                .and_then(|digits| digits.parse::<i64>().ok());
            let (Some(due), Some(id)) = (due, marker.message_id()) else {
                continue;
            };
            if due > now {
                // Names sort in due order: nothing after this one is due either.
                break;
            }
            match self.load(&id).await? {
                Some((entry, _)) if entry.follow_up_due() == Some(due) => entries.push(entry),
                _ => self.drop_stale(marker).await?,
            }
        }
        Ok(entries)
    }

    async fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, JournalError> {
        let seconds = blob_lease_seconds(ttl)?;
        let name = Self::lease_blob(resource);
        // The lease blob exists once per resource; creating it again fails harmlessly.
        self.write(&name, Vec::new(), None).await?;
        let lease_id = uuid::Uuid::new_v4().to_string();
        let options = BlobClientAcquireLeaseOptions {
            proposed_lease_id: Some(lease_id.clone()),
            ..Default::default()
        };
        let now = OffsetDateTime::now_utc();
        match self
            .container
            .blob_client(&name)
            .acquire_lease(seconds, Some(options))
            .await
        {
            Ok(_) => Ok(Some(Lease {
                resource: resource.to_string(),
                lease_id,
                holder: holder.to_string(),
                ttl,
                expires_at: now + ttl,
            })),
            Err(err) if err.http_status() == Some(StatusCode::Conflict) => Ok(None),
            Err(err) => Err(storage("acquire a lease", err)),
        }
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, JournalError> {
        let name = Self::lease_blob(&lease.resource);
        let now = OffsetDateTime::now_utc();
        match self
            .container
            .blob_client(&name)
            .renew_lease(lease.lease_id.clone(), None)
            .await
        {
            Ok(_) => Ok(Lease {
                expires_at: now + lease.ttl,
                ..lease.clone()
            }),
            Err(err) if err.http_status() == Some(StatusCode::Conflict) => {
                Err(JournalError::LeaseLost(lease.resource.clone()))
            }
            Err(err) => Err(storage("renew a lease", err)),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), JournalError> {
        let name = Self::lease_blob(&lease.resource);
        match self
            .container
            .blob_client(&name)
            .release_lease(lease.lease_id.clone(), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.http_status() == Some(StatusCode::Conflict) => {
                Err(JournalError::LeaseLost(lease.resource.clone()))
            }
            Err(err) => Err(storage("release a lease", err)),
        }
    }
}

/// The credential of the deployed journal: the app's managed identity on Azure (or the
/// user-assigned one named by `client_id`), the developer's Azure CLI / azd sign-in elsewhere.
pub(crate) fn storage_credential(
    on_platform: bool,
    client_id: Option<String>,
) -> Result<Arc<dyn TokenCredential>, JournalError> {
    crate::tls::install_crypto_provider();
    if on_platform || client_id.is_some() {
        let options = azure_identity::ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(azure_identity::UserAssignedId::ClientId),
            ..Default::default()
        };
        let credential: Arc<dyn TokenCredential> =
            azure_identity::ManagedIdentityCredential::new(Some(options)).map_err(|err| {
                JournalError::Storage(format!("managed identity credential: {err}"))
            })?;
        Ok(credential)
    } else {
        let credential: Arc<dyn TokenCredential> =
            azure_identity::DeveloperToolsCredential::new(None).map_err(|err| {
                JournalError::Storage(format!("developer tools credential: {err}"))
            })?;
        Ok(credential)
    }
}
