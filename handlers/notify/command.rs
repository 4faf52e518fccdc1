//! `defender-responder notify`: `--render FILE --channel KIND` prints what a channel would
//! send for an alert file (no network); `--test CHANNEL` sends a sample to a configured channel
//! so an operator can check it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use azure_core::credentials::TokenCredential;
use time::OffsetDateTime;

use super::notifier::{render, Notifier, Outgoing};
use super::sample;
use crate::azure::AzureClients;
use crate::config::azure::AzureSettings;
use crate::config::notify::NotifySettings;
use crate::config::Config;
use crate::policy::notifications::ChannelKind;

/// Prints the body `kind` would send for the alert in `file`: JSON for Teams, Slack and the
/// webhook; for e-mail the HTML itself (or the whole `sendMail` body with `json`).
pub fn render_file(
    file: &Path,
    kind: ChannelKind,
    config: &Config,
    email_json: bool,
) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let tasks = sample::plan(&bytes, &config.policy)?;
    let settings =
        NotifySettings::from_lookup(&env, &config.policy.notifications).unwrap_or_default();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let approvals = config.workers.approvals.as_ref();
    let destination = match kind {
        ChannelKind::Email => config
            .policy
            .notify_recipients
            .first()
            .cloned()
            .unwrap_or_else(|| "secops@contoso.com".to_string()),
        other => other.as_str().to_string(),
    };
    let notification = sample::notification(
        &tasks,
        kind.as_str(),
        &destination,
        settings.journal_url.clone(),
        |task| sample::links(approvals, task, now),
    )
    .context("the alert plans no notification")?;
    let body = render(kind, &notification, &destination);
    Ok(match (kind, email_json) {
        (ChannelKind::Email, false) => body["message"]["body"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        _ => serde_json::to_string_pretty(&body)? + "\n",
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The credential for Graph and ARM: the managed identity on Azure (or when
/// `AZURE_CLIENT_ID` names a user-assigned one), the developer tools' sign-in elsewhere.
fn credential() -> anyhow::Result<Arc<dyn TokenCredential>> {
    crate::tls::install_crypto_provider();
    if env("IDENTITY_ENDPOINT").is_some() || env("AZURE_CLIENT_ID").is_some() {
        let options = azure_identity::ManagedIdentityCredentialOptions {
            user_assigned_id: env("AZURE_CLIENT_ID").map(azure_identity::UserAssignedId::ClientId),
            ..Default::default()
        };
        let credential: Arc<dyn TokenCredential> =
            azure_identity::ManagedIdentityCredential::new(Some(options))
                .context("managed identity credential")?;
        Ok(credential)
    } else {
        let credential: Arc<dyn TokenCredential> =
            azure_identity::DeveloperToolsCredential::new(None)
                .context("developer tools credential")?;
        Ok(credential)
    }
}

/// Builds the notifier from the policy and the app settings (Graph and ARM clients included
/// when the policy has an e-mail channel).
pub fn notifier_from_env(config: &Config) -> anyhow::Result<Notifier> {
    let settings = NotifySettings::from_lookup(&env, &config.policy.notifications)?;
    let needs_graph = config
        .policy
        .notifications
        .channels
        .iter()
        .any(|c| c.kind == ChannelKind::Email);
    let clients = if needs_graph {
        let azure = AzureSettings::from_lookup(&env)?;
        Some(AzureClients::new(&azure, credential()?)?)
    } else {
        None
    };
    Ok(Notifier::new(
        &config.policy,
        &settings,
        clients.as_ref().map(|c| c.graph.clone()),
        clients.map(|c| c.arm),
    )?)
}

/// Sends the built-in sample (a Key Vault alert, marked as a test) to `channel`; e-mail goes
/// to `to` (default: the policy's first security-team address).
pub async fn test_channel(
    channel: &str,
    to: Option<&str>,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    let notifier = notifier_from_env(config)?;
    let Some(found) = notifier.channels().iter().find(|c| c.name() == channel) else {
        let names: Vec<&str> = notifier.channels().iter().map(|c| c.name()).collect();
        anyhow::bail!(
            "no channel {channel:?} in the policy's notifications (channels: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let kind = found.kind();
    let tasks = sample::plan(sample::SAMPLE_ALERT.as_bytes(), &config.policy)?;
    let destination = match kind {
        ChannelKind::Email => to
            .map(str::to_string)
            .or_else(|| config.policy.notify_recipients.first().cloned())
            .context("--to ADDRESS is needed: the policy has no notify_recipients")?,
        _ => channel.to_string(),
    };
    let mut notification =
        sample::notification(&tasks, channel, &destination, None, |_| Vec::new())
            .context("the sample plans no notification")?;
    // Unique per run, so a receiver's deduplication does not hide a second test.
    notification.message_id = crate::domain::MessageId::derive(
        "notify-test",
        crate::domain::Action::NotifySecurityTeam,
        &format!(
            "{channel}\u{1f}{}",
            OffsetDateTime::now_utc().unix_timestamp_nanos()
        ),
    );
    notification.title = format!("TEST · {}", notification.title);
    let outgoing = Outgoing {
        channel: channel.to_string(),
        kind,
        destination: destination.clone(),
        notification,
    };
    match notifier.send(&outgoing).await {
        Ok((status, attempts)) => {
            eprintln!(
                "sent a test notification to {channel} ({}, {destination}): HTTP {status} after {attempts} attempt(s); message id {}",
                kind.as_str(),
                outgoing.notification.message_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{channel} ({}): {err}", kind.as_str());
            Ok(ExitCode::FAILURE)
        }
    }
}
