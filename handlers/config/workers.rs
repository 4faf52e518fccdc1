//! The workers' app settings: where the journal lives, the webhook channel, decision links.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use url::Url;

use super::Setting;
use crate::adapters::BlobLedger;
use crate::approval::{self, ApprovalSettings};
use crate::error::Error;
use crate::journal::{
    BlobJournal, BlobJournalSettings, Journal, SharedJournalStore, SqliteJournal,
};
use crate::notify::webhook;
use crate::notify::WebhookSettings;

/// Which journal store: `sqlite` or `blob`.
pub const JOURNAL: &str = "RESPONDER_JOURNAL";
/// The SQLite file of the embedded journal.
pub const JOURNAL_PATH: &str = "RESPONDER_JOURNAL_PATH";
/// The Blob service endpoint of the deployed journal.
pub const JOURNAL_BLOB_ENDPOINT: &str = "RESPONDER_JOURNAL_BLOB_ENDPOINT";
/// The container of the deployed journal.
pub const JOURNAL_CONTAINER: &str = "RESPONDER_JOURNAL_CONTAINER";
/// The user-assigned identity the deployed journal authenticates with.
pub const JOURNAL_CLIENT_ID: &str = "RESPONDER_JOURNAL_CLIENT_ID";

/// How long a decision may take before the sweeper expires the task, in hours.
pub const DECISION_TIMEOUT_HOURS: &str = "RESPONDER_DECISION_TIMEOUT_HOURS";
/// The `DecisionSweeper` timer's NCRONTAB schedule (read by the Functions host).
pub const SWEEP_SCHEDULE: &str = "RESPONDER_SWEEP_SCHEDULE";
/// How often the embedded workers look at their queues, in milliseconds.
pub const WORKER_POLL_MS: &str = "RESPONDER_WORKER_POLL_MS";
/// How often `serve` sweeps on the embedded default.
pub const SWEEP_INTERVAL_SECONDS: &str = "RESPONDER_SWEEP_INTERVAL_SECONDS";
/// Whether `serve` runs the workers in-process on the embedded queues.
pub const EMBEDDED_WORKERS: &str = "RESPONDER_EMBEDDED_WORKERS";
/// The default decision timeout: 72 hours.
pub const DEFAULT_DECISION_TIMEOUT: Duration = Duration::from_secs(72 * 3600);

/// The host's identity-based storage settings, used when the journal's own are unset.
const HOST_BLOB_URI: &str = "AzureWebJobsStorage__blobServiceUri";
const HOST_ACCOUNT_NAME: &str = "AzureWebJobsStorage__accountName";
const HOST_CLIENT_ID: &str = "AzureWebJobsStorage__clientId";

/// The default container of the deployed journal.
pub const DEFAULT_CONTAINER: &str = "journal";

/// Every workers' setting, for documentation and the drift tests.
pub const SETTINGS: &[Setting] = &[
    Setting { name: JOURNAL, default: "", description: "sqlite or blob: where the journal of task states lives. Empty: blob when a Blob endpoint is known (RESPONDER_JOURNAL_BLOB_ENDPOINT, or the host's AzureWebJobsStorage__blobServiceUri / __accountName), sqlite otherwise." },
    Setting { name: JOURNAL_PATH, default: "", description: "SQLite file of the embedded journal. Empty: next to the embedded store, named after it (.responder/store.journal.sqlite3)." },
    Setting { name: JOURNAL_BLOB_ENDPOINT, default: "", description: "Blob service endpoint of the deployed journal (https://<account>.blob.core.windows.net/), reached with the app's managed identity (Storage Blob Data Contributor on the container)." },
    Setting { name: JOURNAL_CONTAINER, default: DEFAULT_CONTAINER, description: "Container of the deployed journal." },
    Setting { name: JOURNAL_CLIENT_ID, default: "", description: "Client id of the user-assigned managed identity for the journal (empty: AzureWebJobsStorage__clientId, then the system-assigned identity)." },
    Setting { name: webhook::URL, default: "", description: "URL of the generic webhook that receives notifications, signed per Standard Webhooks. Empty: the webhook channel is off." },
    Setting { name: webhook::SECRET, default: "", description: "The webhook's signing secret, whsec_<base64 of at least 24 random bytes>. Never logged." },
    Setting { name: webhook::ATTEMPTS, default: "5", description: "Attempts per webhook delivery (1 to 20) before the message is left to the queue's redelivery." },
    Setting { name: webhook::TIMEOUT_SECONDS, default: "10", description: "Bound on one webhook attempt, in seconds (1 to 120)." },
    Setting { name: approval::KEY, default: "", description: "Key that signs decision links (at least 32 characters). Empty: decision links are off. Never logged." },
    Setting { name: approval::DECISION_URL, default: "", description: "Public URL of the decision endpoint, e.g. https://<app>.azurewebsites.net/api/decide." },
    Setting { name: approval::TTL_HOURS, default: "72", description: "How long a decision link is valid, in hours (1 to 720)." },
    Setting { name: approval::IDENTITY, default: "", description: "app_service_auth (the approver signs in with App Service Authentication and must be a recipient or an approver) or link (the link alone is the credential). Empty: app_service_auth on App Service, link elsewhere." },
    Setting { name: DECISION_TIMEOUT_HOURS, default: "72", description: "How long a task waits for a decision before the sweeper settles it as the policy's on_timeout says (by default it expires and its recipients are told), in hours (1 to 720)." },
    Setting { name: SWEEP_SCHEDULE, default: "0 */5 * * * *", description: "NCRONTAB schedule of the DecisionSweeper timer (settles timed-out decisions, queues approved tasks again, runs due follow-ups). Read by the Functions host; the embedded default sweeps every 5 minutes." },
    Setting { name: WORKER_POLL_MS, default: "500", description: "How often the embedded workers in serve look at their queues, in milliseconds (10 to 60000)." },
    Setting { name: EMBEDDED_WORKERS, default: "true", description: "false: serve only takes alerts in on the embedded default; the tasks wait on the embedded queues for work --once. Ignored with Service Bus (the host triggers the workers)." },
    Setting { name: approval::APPROVERS, default: "", description: "Comma-separated sign-in names who may decide on any task, besides each task's recipients." },
    Setting { name: SWEEP_INTERVAL_SECONDS, default: "300", description: "How often serve sweeps on the embedded default (settles timed-out decisions, runs due follow-ups such as disabling old secret versions after the grace window), in seconds (1 to 3600). With Service Bus the DecisionSweeper timer's RESPONDER_SWEEP_SCHEDULE applies." },
];

/// Where the journal lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalSettings {
    /// A SQLite file.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
    /// Azure Blob storage.
    Blob {
        /// Endpoint, container and identity.
        settings: BlobJournalSettings,
        /// The setting the endpoint came from (named in storage errors).
        endpoint_setting: &'static str,
        /// Whether a managed identity endpoint is present (on Azure).
        on_platform: bool,
    },
}

impl JournalSettings {
    /// Opens the journal these settings name. Nothing is sent to Blob storage yet: a
    /// deployment creates the container, and [`BlobJournal::ensure_container`] covers local
    /// runs.
    pub fn open(&self) -> Result<Journal, Error> {
        let store: SharedJournalStore = match self {
            JournalSettings::Sqlite { path } => Arc::new(SqliteJournal::open(path)?),
            JournalSettings::Blob {
                settings,
                on_platform,
                ..
            } => {
                let credential =
                    crate::journal::storage_credential(*on_platform, settings.client_id.clone())?;
                Arc::new(BlobJournal::new(settings, credential, None)?)
            }
        };
        Ok(Journal::new(store))
    }

    /// The intake ledger that goes with this journal: in the journal's Blob container, shared
    /// by every instance, when the journal is in Blob storage; `None` when it is the embedded
    /// SQLite journal (the embedded store is then the ledger, as it is each process's own).
    pub fn open_ledger(&self) -> Result<Option<BlobLedger>, Error> {
        let JournalSettings::Blob {
            settings,
            on_platform,
            ..
        } = self
        else {
            return Ok(None);
        };
        let credential =
            crate::journal::storage_credential(*on_platform, settings.client_id.clone())?;
        self.open_ledger_with(credential, None)
    }

    /// [`JournalSettings::open_ledger`] with the given credential and client options (tests
    /// pass a transport that trusts a local certificate).
    pub fn open_ledger_with(
        &self,
        credential: Arc<dyn TokenCredential>,
        client_options: Option<ClientOptions>,
    ) -> Result<Option<BlobLedger>, Error> {
        let JournalSettings::Blob {
            settings,
            endpoint_setting,
            ..
        } = self
        else {
            return Ok(None);
        };
        // Storage errors name the settings an operator would check.
        let location = format!(
            "{endpoint_setting}={} and {JOURNAL_CONTAINER}={}",
            settings.endpoint, settings.container
        );
        Ok(Some(BlobLedger::new(
            settings,
            location,
            credential,
            client_options,
        )?))
    }

    /// A short description for the start-up log (no secrets).
    pub fn describe(&self) -> String {
        match self {
            JournalSettings::Sqlite { path } => format!("sqlite:{}", path.display()),
            JournalSettings::Blob { settings, .. } => {
                format!("blob:{}{}", settings.endpoint, settings.container)
            }
        }
    }
}

/// The workers' validated settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Where the journal lives.
    pub journal: JournalSettings,
    /// The webhook channel, when configured.
    pub webhook: Option<WebhookSettings>,
    /// Decision links, when configured.
    pub approvals: Option<ApprovalSettings>,
    /// How long a decision may take.
    pub decision_timeout: Duration,
    /// How often the embedded workers poll their queues.
    pub poll: Duration,
    /// How often `serve` sweeps on the embedded default.
    pub sweep_interval: Duration,
    /// Whether `serve` runs the workers on the embedded queues.
    pub embedded_workers: bool,
}

impl WorkerSettings {
    /// Reads the settings through `get` (trimmed, empty as unset); `store_path` is the
    /// embedded store's file, after which the embedded journal's default file is named.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        store_path: &Path,
    ) -> Result<Self, Error> {
        let on_app_service =
            get("WEBSITE_SITE_NAME").is_some() || get("WEBSITE_INSTANCE_ID").is_some();
        let on_platform = get("IDENTITY_ENDPOINT").is_some() || get("MSI_ENDPOINT").is_some();
        Ok(WorkerSettings {
            journal: journal_settings(get, store_path, on_platform)?,
            webhook: WebhookSettings::from_lookup(get)?,
            approvals: ApprovalSettings::from_lookup(get, on_app_service)?,
            decision_timeout: Duration::from_secs(
                3600 * number(get, DECISION_TIMEOUT_HOURS, 72, 1..=720)?,
            ),
            poll: Duration::from_millis(number(get, WORKER_POLL_MS, 500, 10..=60_000)?),
            sweep_interval: Duration::from_secs(number(
                get,
                SWEEP_INTERVAL_SECONDS,
                300,
                1..=3600,
            )?),
            embedded_workers: match get(EMBEDDED_WORKERS).as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(other) => {
                    return Err(Error::Config(format!(
                        "{EMBEDDED_WORKERS}={other:?} must be true or false"
                    )))
                }
            },
        })
    }
}

/// A whole number setting within `range`; the error names the setting.
fn number(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Error> {
    match get(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                Error::Config(format!(
                    "{name}={text:?} is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// The embedded journal's file: next to the embedded store's, named after it
/// (`.responder/store.sqlite3` → `.responder/store.journal.sqlite3`). A file of its own: the
/// store holds its file exclusively, and the journal is shared with the `journal` and
/// `decide` commands while the handler runs.
pub fn default_journal_path(store_path: &Path) -> PathBuf {
    let stem = store_path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".to_string());
    store_path.with_file_name(format!("{stem}.journal.sqlite3"))
}

fn journal_settings(
    get: &dyn Fn(&str) -> Option<String>,
    store_path: &Path,
    on_platform: bool,
) -> Result<JournalSettings, Error> {
    let endpoint = match get(JOURNAL_BLOB_ENDPOINT) {
        Some(text) => Some((JOURNAL_BLOB_ENDPOINT, text)),
        None => get(HOST_BLOB_URI)
            .map(|text| (HOST_BLOB_URI, text))
            .or_else(|| {
                get(HOST_ACCOUNT_NAME).map(|name| {
                    (
                        HOST_ACCOUNT_NAME,
                        format!("https://{name}.blob.core.windows.net/"),
                    )
                })
            }),
    };
    let kind = match get(JOURNAL).as_deref() {
        None if endpoint.is_some() => "blob".to_string(),
        None => "sqlite".to_string(),
        Some(kind @ ("sqlite" | "blob")) => kind.to_string(),
        Some(other) => {
            return Err(Error::Config(format!(
                "{JOURNAL}={other:?} must be sqlite or blob"
            )))
        }
    };
    if kind == "sqlite" {
        let path = get(JOURNAL_PATH)
            .map(PathBuf::from)
            .unwrap_or_else(|| default_journal_path(store_path));
        return Ok(JournalSettings::Sqlite { path });
    }
    let (name, text) = endpoint.ok_or_else(|| {
        Error::Config(format!(
            "{JOURNAL}=blob needs {JOURNAL_BLOB_ENDPOINT} (https://<account>.blob.core.windows.net/)"
        ))
    })?;
    let endpoint = Url::parse(&text)
        .map_err(|err| Error::Config(format!("{name}={text:?} is not a URL: {err}")))?;
    if endpoint.scheme() != "https" {
        return Err(Error::Config(format!(
            "{name}={text:?} must be https (the identity's token is only sent over HTTPS)"
        )));
    }
    let container = get(JOURNAL_CONTAINER).unwrap_or_else(|| DEFAULT_CONTAINER.to_string());
    let valid = (3..=63).contains(&container.len())
        && container
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !container.starts_with('-')
        && !container.ends_with('-')
        && !container.contains("--");
    if !valid {
        return Err(Error::Config(format!(
            "{JOURNAL_CONTAINER}={container:?} is not a container name (3 to 63 lowercase letters, digits and single hyphens)"
        )));
    }
    Ok(JournalSettings::Blob {
        settings: BlobJournalSettings {
            endpoint,
            container,
            client_id: get(JOURNAL_CLIENT_ID).or_else(|| get(HOST_CLIENT_ID)),
        },
        endpoint_setting: name,
        on_platform,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<WorkerSettings, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorkerSettings::from_lookup(&|name| map.get(name).cloned(), Path::new("store.sqlite3"))
    }

    #[test]
    fn the_embedded_journal_is_the_default_in_a_file_next_to_the_store() {
        let workers = settings(&[]).unwrap();
        assert_eq!(
            workers.journal,
            JournalSettings::Sqlite {
                path: PathBuf::from("store.journal.sqlite3")
            }
        );
        assert_eq!(
            default_journal_path(Path::new(".responder/store.sqlite3")),
            PathBuf::from(".responder/store.journal.sqlite3")
        );
        assert!(workers.webhook.is_none() && workers.approvals.is_none());
    }

    #[test]
    fn the_host_storage_identity_selects_the_blob_journal() {
        let workers = settings(&[
            (HOST_ACCOUNT_NAME, "stresponder"),
            (HOST_CLIENT_ID, "1111"),
            ("IDENTITY_ENDPOINT", "http://169.254.255.2:8081/msi/token"),
        ])
        .unwrap();
        let JournalSettings::Blob {
            settings,
            endpoint_setting,
            on_platform,
        } = &workers.journal
        else {
            panic!("blob expected");
        };
        assert_eq!(*endpoint_setting, HOST_ACCOUNT_NAME);
        assert_eq!(
            settings.endpoint.as_str(),
            "https://stresponder.blob.core.windows.net/"
        );
        assert_eq!(settings.container, "journal");
        assert_eq!(settings.client_id.as_deref(), Some("1111"));
        assert!(on_platform);
        assert_eq!(
            settings.container_url().unwrap().as_str(),
            "https://stresponder.blob.core.windows.net/journal"
        );
    }

    #[test]
    fn the_ledger_follows_the_journal_and_names_the_setting_of_its_storage() {
        assert!(settings(&[])
            .unwrap()
            .journal
            .open_ledger()
            .unwrap()
            .is_none());
        let workers = settings(&[
            (HOST_BLOB_URI, "https://stresponder.blob.core.windows.net/"),
            (JOURNAL_CONTAINER, "journal-a"),
        ])
        .unwrap();
        let ledger = workers
            .journal
            .open_ledger()
            .unwrap()
            .expect("a Blob ledger");
        assert_eq!(
            ledger.location(),
            "AzureWebJobsStorage__blobServiceUri=https://stresponder.blob.core.windows.net/ and RESPONDER_JOURNAL_CONTAINER=journal-a"
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = settings(&[(JOURNAL, "cosmos")]).unwrap_err().to_string();
        assert!(err.contains(JOURNAL), "{err}");
        let err = settings(&[(JOURNAL, "blob")]).unwrap_err().to_string();
        assert!(err.contains(JOURNAL_BLOB_ENDPOINT), "{err}");
        let err = settings(&[(JOURNAL_BLOB_ENDPOINT, "http://acct.blob.core.windows.net/")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("https"), "{err}");
        let err = settings(&[
            (JOURNAL_BLOB_ENDPOINT, "https://acct.blob.core.windows.net/"),
            (JOURNAL_CONTAINER, "Journal_1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains(JOURNAL_CONTAINER), "{err}");
        let err = settings(&[(DECISION_TIMEOUT_HOURS, "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains(DECISION_TIMEOUT_HOURS), "{err}");
        assert_eq!(
            settings(&[(DECISION_TIMEOUT_HOURS, "2")])
                .unwrap()
                .decision_timeout,
            Duration::from_secs(7200)
        );
    }

    #[test]
    fn every_setting_read_here_is_listed() {
        let listed: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        for name in [
            JOURNAL,
            JOURNAL_PATH,
            JOURNAL_BLOB_ENDPOINT,
            JOURNAL_CONTAINER,
            JOURNAL_CLIENT_ID,
            webhook::URL,
            webhook::SECRET,
            webhook::ATTEMPTS,
            webhook::TIMEOUT_SECONDS,
            approval::KEY,
            approval::DECISION_URL,
            approval::TTL_HOURS,
            approval::IDENTITY,
            approval::APPROVERS,
            DECISION_TIMEOUT_HOURS,
            SWEEP_SCHEDULE,
            WORKER_POLL_MS,
            EMBEDDED_WORKERS,
            SWEEP_INTERVAL_SECONDS,
        ] {
            assert!(listed.contains(&name), "{name}");
        }
    }
}
