//! The intake ledger shared by every instance of the function app: one JSON blob per alert in
//! the journal's container, claimed and updated only with conditional writes (ETags).
//!
//! Layout: `ledger/<sha256 of the systemAlertId>.json` holds what is known of one alert (its
//! last status, every status change, whether a response was planned) and, while a delivery is
//! deciding and publishing, that delivery's claim: its instance and when the claim expires.
//! A claim is taken with `If-None-Match: *` (a new alert) or `If-Match` on the ETag read (a
//! known one), so of two instances racing on one alert exactly one holds it; the other waits
//! for the outcome and finds the alert planned. A claim whose holder died expires after its
//! time to live and the next delivery takes it over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Etag, RequestContent, StatusCode};
use azure_storage_blob::models::{BlobClientDownloadOptions, BlobClientUploadOptions};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{AlertLedger, Claims, LedgerEntry};
use crate::domain::AlertStatus;
use crate::error::Error;
use crate::journal::BlobJournalSettings;

/// How long a claim lasts unless its holder records the outcome first. Longer than any
/// delivery takes to publish (each send is bounded by the Service Bus send timeout), short
/// enough that the platform's redelivery after a crash finds the claim expired.
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(60);

/// How many times a record re-reads after losing a race to another writer.
const RECORD_ATTEMPTS: usize = 16;
/// The longest pause between two looks at another instance's claim.
const MOST_PAUSE: Duration = Duration::from_millis(400);
/// The status changes a record keeps (the oldest go first).
const MOST_STATUSES: usize = 32;

/// What the ledger knows of one alert, as stored in its blob.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AlertRecord {
    system_alert_id: String,
    /// The last status recorded; `None` while the first delivery is still deciding.
    status: Option<AlertStatus>,
    /// Whether a response was planned and published; never goes back to false.
    planned: bool,
    /// Every status recorded, in order, with when.
    statuses: Vec<StatusSeen>,
    #[serde(with = "time::serde::rfc3339")]
    first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    /// The delivery deciding right now, if any.
    claim: Option<Claim>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StatusSeen {
    status: AlertStatus,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Claim {
    /// The instance (ledger) holding it.
    holder: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

impl AlertRecord {
    fn new(system_alert_id: &str, now: OffsetDateTime) -> Self {
        AlertRecord {
            system_alert_id: system_alert_id.to_string(),
            status: None,
            planned: false,
            statuses: Vec::new(),
            first_seen: now,
            updated_at: now,
            claim: None,
        }
    }

    fn entry(&self) -> Option<LedgerEntry> {
        self.status.map(|status| LedgerEntry {
            status,
            planned: self.planned,
        })
    }

    /// The claim of another instance that has not expired yet.
    fn live_claim_of_another(&self, me: &str, now: OffsetDateTime) -> Option<&Claim> {
        self.claim
            .as_ref()
            .filter(|claim| claim.holder != me && claim.expires_at > now)
    }

    fn merge(&mut self, status: AlertStatus, planned: bool, me: &str, now: OffsetDateTime) {
        if self.status != Some(status) {
            self.statuses.push(StatusSeen { status, at: now });
            let excess = self.statuses.len().saturating_sub(MOST_STATUSES);
            self.statuses.drain(..excess);
        }
        self.status = Some(status);
        self.planned |= planned;
        self.updated_at = now;
        if self.claim.as_ref().is_some_and(|claim| claim.holder == me) {
            self.claim = None;
        }
    }
}

/// The intake ledger in Azure Blob storage, shared by every instance.
pub struct BlobLedger {
    container: BlobContainerClient,
    /// The settings that name the storage, for error messages.
    location: String,
    /// This instance, as named in the claims it takes.
    instance: String,
    claim_ttl: Duration,
    claims: Claims,
    /// The blobs this instance claimed and has not recorded yet, with the ETag of the claim:
    /// the record is written on that ETag without reading the blob again.
    held: Mutex<HashMap<String, (AlertRecord, Etag)>>,
}

impl std::fmt::Debug for BlobLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobLedger")
            .field("location", &self.location)
            .field("instance", &self.instance)
            .field("claim_ttl", &self.claim_ttl)
            .finish()
    }
}

impl BlobLedger {
    /// The ledger in the journal's container (`settings`), authenticating with `credential`.
    /// `location` names the settings that chose the storage, for error messages;
    /// `client_options` replace the defaults (tests pass a transport that trusts a local
    /// certificate).
    pub fn new(
        settings: &BlobJournalSettings,
        location: String,
        credential: Arc<dyn TokenCredential>,
        client_options: Option<ClientOptions>,
    ) -> Result<Self, Error> {
        let url = settings
            .container_url()
            .map_err(|err| Error::configuration(format!("{location}: {err}")))?;
        let options = BlobContainerClientOptions {
            client_options: client_options.unwrap_or_default(),
            ..Default::default()
        };
        let container = BlobContainerClient::new(url.clone(), Some(credential), Some(options))
            .map_err(|err| {
                Error::configuration(format!("{location}: blob client for {url}: {err}"))
            })?;
        Ok(BlobLedger {
            container,
            location,
            instance: uuid::Uuid::new_v4().to_string(),
            claim_ttl: DEFAULT_CLAIM_TTL,
            claims: Claims::default(),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// Changes how long this instance's claims last.
    pub fn with_claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// Where it lives, naming the settings (no secrets: the identity is a managed one).
    pub fn location(&self) -> &str {
        &self.location
    }

    fn blob_name(system_alert_id: &str) -> String {
        format!(
            "ledger/{}.json",
            hex::encode(Sha256::digest(system_alert_id.as_bytes()))
        )
    }

    fn failure(&self, what: &str, err: azure_core::Error) -> Error {
        match err.http_status() {
            // The identity lacks its role, or the container is missing: an operator fixes the
            // deployment; meanwhile every delivery is redelivered.
            Some(status @ (StatusCode::Unauthorized | StatusCode::Forbidden)) => {
                Error::configuration(format!(
                    "the intake ledger cannot {what} in {} (HTTP {status}; the app's identity needs Storage Blob Data Contributor on the container): {err}",
                    self.location
                ))
            }
            Some(StatusCode::NotFound) => Error::configuration(format!(
                "the intake ledger cannot {what} in {}: the container does not exist (HTTP 404; the deployment creates it): {err}",
                self.location
            )),
            Some(status) => Error::transient(format!(
                "the intake ledger cannot {what} in {} (HTTP {status}): {err}",
                self.location
            )),
            None => Error::transient(format!(
                "the intake ledger cannot {what} in {}: {err}",
                self.location
            )),
        }
    }

    /// Reads an alert's record and its ETag; `None` when the alert was never seen.
    async fn read(&self, name: &str) -> Result<Option<(AlertRecord, Etag)>, Error> {
        let options = BlobClientDownloadOptions {
            // One request: records are small, and the ETag must be the one of these bytes.
            parallel: std::num::NonZero::new(1),
            ..Default::default()
        };
        match self
            .container
            .blob_client(name)
            .download(Some(options))
            .await
        {
            Ok(response) => {
                let etag = response.properties.etag.clone().ok_or_else(|| {
                    Error::transient(format!("{}: {name} has no ETag", self.location))
                })?;
                let body = response
                    .body
                    .collect()
                    .await
                    .map_err(|err| self.failure("read a record", err))?;
                let record = serde_json::from_slice(&body).map_err(|err| {
                    Error::transient(format!(
                        "unreadable intake ledger record {name} in {}: {err}",
                        self.location
                    ))
                })?;
                Ok(Some((record, etag)))
            }
            Err(err)
                if err.http_status() == Some(StatusCode::NotFound) && is_blob_missing(&err) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.failure("read a record", err)),
        }
    }

    /// Writes a record if the blob is still at `expected` (`None`: only if there is none).
    /// `Ok(None)` when another writer came first (nothing written).
    async fn write(
        &self,
        name: &str,
        record: &AlertRecord,
        expected: Option<&Etag>,
    ) -> Result<Option<Etag>, Error> {
        let bytes = serde_json::to_vec(record)
            .map_err(|err| Error::permanent(format!("cannot encode a ledger record: {err}")))?;
        let options = BlobClientUploadOptions {
            if_match: expected.cloned(),
            if_none_match: expected.is_none().then(|| Etag::from("*")),
            blob_content_type: Some("application/json".into()),
            ..Default::default()
        };
        match self
            .container
            .blob_client(name)
            .upload(RequestContent::from(bytes), Some(options))
            .await
        {
            Ok(result) => Ok(Some(result.etag.ok_or_else(|| {
                Error::transient(format!(
                    "{}: the upload of {name} returned no ETag",
                    self.location
                ))
            })?)),
            Err(err)
                if matches!(
                    err.http_status(),
                    Some(StatusCode::PreconditionFailed | StatusCode::Conflict)
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.failure("write a record", err)),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (AlertRecord, Etag)>> {
        // The map holds only hints (a stale one costs a re-read): a poisoned lock is still
        // usable.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a 404 says the blob is missing (a never seen alert), not the container.
fn is_blob_missing(err: &azure_core::Error) -> bool {
    !matches!(
        err.kind(),
        azure_core::error::ErrorKind::HttpResponse { error_code: Some(code), .. }
            if code == "ContainerNotFound"
    )
}

#[async_trait::async_trait]
impl AlertLedger for BlobLedger {
    async fn lookup(&self, system_alert_id: &str) -> Result<Option<LedgerEntry>, Error> {
        let name = Self::blob_name(system_alert_id);
        Ok(self
            .read(&name)
            .await?
            .and_then(|(record, _)| record.entry()))
    }

    async fn claim_and_lookup(
        &self,
        system_alert_id: &str,
        wait: Duration,
    ) -> Result<Option<LedgerEntry>, Error> {
        let name = Self::blob_name(system_alert_id);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(25);
        loop {
            let now = OffsetDateTime::now_utc();
            let (mut record, etag) = match self.read(&name).await? {
                Some((record, _)) if record.planned => return Ok(record.entry()),
                Some((record, etag)) => (record, Some(etag)),
                None => (AlertRecord::new(system_alert_id, now), None),
            };
            if let Some(claim) = record.live_claim_of_another(&self.instance, now) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::transient(format!(
                        "alert {system_alert_id} is being handled by another instance (its claim expires at {}); retry",
                        claim
                            .expires_at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    ))
                    .with_retry_after(Duration::from_secs(1)));
                }
                let until_expiry = Duration::try_from(claim.expires_at - now).unwrap_or_default();
                tokio::time::sleep(pause.min(left).min(until_expiry)).await;
                pause = (pause * 2).min(MOST_PAUSE);
                continue;
            }
            // No claim, an expired one, or this instance's own from a delivery that failed
            // before recording (this process lets one delivery of an alert in at a time).
            let known = record.entry();
            record.claim = Some(Claim {
                holder: self.instance.clone(),
                expires_at: now + self.claim_ttl,
            });
            if let Some(claimed) = self.write(&name, &record, etag.as_ref()).await? {
                self.held()
                    .insert(system_alert_id.to_string(), (record, claimed));
                return Ok(known);
            }
            // Another instance wrote first: look again at what it wrote.
            if Instant::now() >= deadline {
                return Err(Error::transient(format!(
                    "alert {system_alert_id}: the intake ledger record kept changing; retry"
                )));
            }
        }
    }

    async fn record(
        &self,
        system_alert_id: &str,
        status: AlertStatus,
        planned: bool,
    ) -> Result<(), Error> {
        let name = Self::blob_name(system_alert_id);
        // First try on the claim's ETag, without reading; after a lost race, read again.
        let mut current = self
            .held()
            .remove(system_alert_id)
            .map(|(record, etag)| (Some(record), Some(etag)));
        for _ in 0..RECORD_ATTEMPTS {
            let (record, etag) = match current.take() {
                Some(pair) => pair,
                None => match self.read(&name).await? {
                    Some((record, etag)) => (Some(record), Some(etag)),
                    None => (None, None),
                },
            };
            let now = OffsetDateTime::now_utc();
            let mut record = record.unwrap_or_else(|| AlertRecord::new(system_alert_id, now));
            record.merge(status, planned, &self.instance, now);
            if self.write(&name, &record, etag.as_ref()).await?.is_some() {
                return Ok(());
            }
        }
        Err(Error::transient(format!(
            "alert {system_alert_id}: the intake ledger record kept changing in {}; retry",
            self.location
        )))
    }

    async fn release(&self, system_alert_id: &str) {
        let Some((mut record, etag)) = self.held().remove(system_alert_id) else {
            return;
        };
        record.claim = None;
        let name = Self::blob_name(system_alert_id);
        // A lost race means someone else wrote meanwhile (the claim had expired): nothing to
        // give back. A failure leaves the claim to expire.
        if let Err(err) = self.write(&name, &record, Some(&etag)).await {
            tracing::debug!(alert_id = %system_alert_id, error = %err, "Claim not given back; it expires.");
        }
    }

    fn claims(&self) -> &Claims {
        &self.claims
    }

    fn name(&self) -> &'static str {
        "blob"
    }
}
