//! Shared helpers: a local Azurite (started by scripts/ensure-azurite.sh), an Entra-shaped
//! token credential Azurite accepts, sample tasks.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport, Url};
use base64::Engine;
use defender_responder::domain::{Action, AlertRef, Task, TaskStatus};
use defender_responder::journal::{BlobJournal, BlobJournalSettings};
use time::OffsetDateTime;

/// Where the local Azurite serves Blob storage, and the certificate it serves.
pub(crate) struct Azurite {
    pub endpoint: Url,
    pub cert: PathBuf,
}

/// Runs scripts/ensure-azurite.sh once per test binary (it installs and starts Azurite when
/// needed) and reads the endpoint it prints.
pub(crate) fn azurite() -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-azurite.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .expect("run scripts/ensure-azurite.sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "ensure-azurite failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .unwrap_or_else(|| panic!("ensure-azurite printed no {key}: {stdout}"))
                .to_string()
        };
        Azurite {
            endpoint: Url::parse(&value("AZURITE_BLOB_ENDPOINT=")).unwrap(),
            cert: PathBuf::from(value("AZURITE_CERT=")),
        }
    })
}

/// A token credential that hands out Entra-shaped JWTs (unsigned: Azurite's `--oauth basic`
/// checks issuer, audience and lifetime, not the signature). The Blob client sends them as
/// bearer tokens over HTTPS exactly as it would a managed identity's.
#[derive(Debug)]
pub(crate) struct EntraShapedCredential;

#[async_trait::async_trait]
impl TokenCredential for EntraShapedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://storage.azure.com/.default"]);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let tenant = "ab1f708d-50f6-404c-a006-d71b2ac7a606";
        let encode = |json: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
        };
        let token = format!(
            "{}.{}.c2lnbmF0dXJl",
            encode(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            encode(serde_json::json!({
                "aud": "https://storage.azure.com",
                "iss": format!("https://sts.windows.net/{tenant}/"),
                "tid": tenant, "oid": "00000000-0000-0000-0000-00000000a11e",
                "iat": now, "nbf": now - 60, "exp": now + 3600,
            }))
        );
        Ok(AccessToken::new(
            token,
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

/// Client options whose transport trusts Azurite's self-signed certificate.
pub(crate) fn azurite_client_options() -> ClientOptions {
    let azurite = azurite();
    let pem = std::fs::read(&azurite.cert).unwrap();
    defender_responder::tls::install_crypto_provider();
    let client = reqwest_for_azure_core::Client::builder()
        .add_root_certificate(reqwest_for_azure_core::Certificate::from_pem(&pem).unwrap())
        .no_gzip()
        .build()
        .unwrap();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(client))),
        ..Default::default()
    }
}

/// A Blob journal in a fresh container of the local Azurite.
pub(crate) async fn blob_journal() -> BlobJournal {
    let azurite = azurite();
    let container = format!("journal-{}", uuid::Uuid::new_v4().simple());
    let settings = BlobJournalSettings {
        endpoint: azurite.endpoint.clone(),
        container,
        client_id: None,
    };
    let journal = BlobJournal::new(
        &settings,
        Arc::new(EntraShapedCredential),
        Some(azurite_client_options()),
    )
    .unwrap();
    journal.ensure_container().await.unwrap();
    journal
}

/// A second client on the same container (another instance of the function app).
pub(crate) fn blob_journal_on(container_of: &BlobJournal) -> BlobJournal {
    let settings = container_of.settings().clone();
    BlobJournal::new(
        &settings,
        Arc::new(EntraShapedCredential),
        Some(azurite_client_options()),
    )
    .unwrap()
}

/// A containment task waiting for a decision, on a target named after `target`.
pub(crate) fn pending_task(alert: &str, target: &str) -> Task {
    let mut task = Task::example(
        &AlertRef::sample(alert),
        Action::EnableKeyVaultFirewall,
        &["KV-2a"],
        target,
        "the vault was read from an address it has never seen",
    );
    task.status = TaskStatus::PendingApproval;
    task.recipients = vec!["owner@contoso.com".into()];
    task
}

/// The webhook receiver's signing secret.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The receiver process; killed when dropped.
pub(crate) struct Receiver {
    child: Child,
    pub port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// Starts the receiver answering with `script` (see webhook_receiver.py).
    pub(crate) fn start(script: &[&str]) -> Receiver {
        let ready = Command::new("python3")
            .args(["-c", "import standardwebhooks"])
            .status()
            .expect("python3");
        if !ready.success() {
            let installed = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "standardwebhooks"])
                .status()
                .expect("pip");
            assert!(installed.success(), "pip install standardwebhooks failed");
        }
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/workers/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(path)
            .args(script)
            .env("WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("receiver said {line:?}"))
            .parse()
            .unwrap();
        Receiver { child, port }
    }

    pub(crate) fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}/hook", self.port)).unwrap()
    }

    /// What the receiver got, in order.
    pub(crate) async fn log(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("http://127.0.0.1:{}/log", self.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
