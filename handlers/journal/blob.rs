//! The deployed journal: JSON blobs in a container of the function app's own storage account,
//! reached with its managed identity through the official `azure_storage_blob` client.
//!
//! Layout: `tasks/<message id>.json` holds an entry and is replaced only with `If-Match` on
//! the ETag read (a lost race answers 412 and writes nothing); `alerts/<sha256 of the alert
//! id>.json` lists an alert's message ids (kept the same way); `leases/<sha256 of the
//! resource>` is an empty blob whose Blob lease (15 to 60 seconds) serialises work on one
//! resource across every instance.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Etag, RequestContent, StatusCode, Url};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientDownloadOptions, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{JournalEntry, JournalError, JournalStore, Lease, Version};
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

impl BlobJournal {
    /// A journal on `settings`' container, authenticating with `credential`. `client_options`
    /// replace the defaults (tests pass a transport that trusts a local certificate).
    pub fn new(
        settings: &BlobJournalSettings,
        credential: Arc<dyn TokenCredential>,
        client_options: Option<ClientOptions>,
    ) -> Result<Self, JournalError> {
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
        let etag = Etag::from(expected.0.clone());
        Ok(self
            .write(&name, encode(entry)?, Some(&etag))
            .await?
            .map(|etag| Version(etag.to_string())))
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
