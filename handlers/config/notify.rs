//! The secrets of the policy's notification channels, from app settings only: each channel
//! `NAME` reads `RESPONDER_NOTIFY_<NAME>_URL` (Teams, Slack, webhook) and
//! `RESPONDER_NOTIFY_<NAME>_SECRET` (webhook). Read and validated at start-up; values are
//! never logged and `Debug` shows none.

use std::collections::BTreeMap;
use std::fmt;

use url::Url;

use crate::error::Error;
use crate::notify::WebhookSecret;
use crate::policy::notifications::{ChannelKind, NotificationPolicy};

/// App setting: the base URL of the journal links in notifications
/// (`https://<app>.azurewebsites.net/api/journal`); links are left out when unset.
pub const JOURNAL_URL: &str = "RESPONDER_NOTIFY_JOURNAL_URL";

/// The app setting of one of a channel's secrets: `RESPONDER_NOTIFY_<NAME>_<PART>`, the name
/// upper-cased with `-` as `_`.
pub fn setting_name(channel: &str, part: &str) -> String {
    format!(
        "RESPONDER_NOTIFY_{}_{part}",
        channel.to_ascii_uppercase().replace('-', "_")
    )
}

/// One channel's secret material.
#[derive(Clone, PartialEq, Eq)]
pub enum ChannelSecret {
    /// The webhook URL (Teams Workflows, Slack): the URL is the credential.
    Url(Url),
    /// A signed webhook: the receiver's URL and the signing secret.
    Signed(Url, WebhookSecret),
    /// E-mail needs no secret here: Graph takes the app's managed identity.
    None,
}

impl fmt::Debug for ChannelSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the host: the path and query of a webhook URL are the secret.
        let host = |url: &Url| url.host_str().unwrap_or("").to_string();
        match self {
            ChannelSecret::Url(url) => write!(f, "Url({}/***)", host(url)),
            ChannelSecret::Signed(url, _) => write!(f, "Signed({}/***, ***)", host(url)),
            ChannelSecret::None => f.write_str("None"),
        }
    }
}

/// Every channel's secrets and the journal link base.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifySettings {
    /// By channel name.
    pub secrets: BTreeMap<String, ChannelSecret>,
    /// The base of journal links.
    pub journal_url: Option<Url>,
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

fn read_url(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Url, Error> {
    let text = get(name).ok_or_else(|| Error::Config(format!("{name} is not set")))?;
    // The value is a credential: errors name the setting, never echo it.
    let url = Url::parse(text.trim())
        .map_err(|err| Error::Config(format!("{name} is not a URL ({err})")))?;
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
        return Err(Error::Config(format!(
            "{name} must be an https URL (http is allowed for loopback only)"
        )));
    }
    Ok(url)
}

impl NotifySettings {
    /// Reads the secrets of every channel the policy names; a missing or bad one is an error
    /// naming its setting.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        policy: &NotificationPolicy,
    ) -> Result<Self, Error> {
        let mut secrets = BTreeMap::new();
        for channel in &policy.channels {
            let secret = match channel.kind {
                ChannelKind::Teams | ChannelKind::Slack => {
                    ChannelSecret::Url(read_url(get, &setting_name(&channel.name, "URL"))?)
                }
                ChannelKind::Webhook => {
                    let url = read_url(get, &setting_name(&channel.name, "URL"))?;
                    let name = setting_name(&channel.name, "SECRET");
                    let text =
                        get(&name).ok_or_else(|| Error::Config(format!("{name} is not set")))?;
                    let secret = WebhookSecret::parse(&text)
                        .map_err(|problem| Error::Config(format!("{name}: {problem}")))?;
                    ChannelSecret::Signed(url, secret)
                }
                ChannelKind::Email => ChannelSecret::None,
            };
            secrets.insert(channel.name.clone(), secret);
        }
        let journal_url = match get(JOURNAL_URL) {
            None => None,
            Some(_) => Some(read_url(get, JOURNAL_URL)?),
        };
        Ok(NotifySettings {
            secrets,
            journal_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::notifications::ChannelSpec;

    fn policy() -> NotificationPolicy {
        let spec = |name: &str, kind| ChannelSpec {
            name: name.into(),
            kind,
            sender: (kind == ChannelKind::Email).then(|| "responder@contoso.com".to_string()),
        };
        NotificationPolicy {
            channels: vec![
                spec("soc-teams", ChannelKind::Teams),
                spec("soar", ChannelKind::Webhook),
                spec("mail", ChannelKind::Email),
            ],
            ..Default::default()
        }
    }

    const HOOK: &str =
        "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=SECRETSIG";

    #[test]
    fn each_channel_secret_is_named_after_its_channel_and_never_shown() {
        let values: BTreeMap<&str, &str> = [
            ("RESPONDER_NOTIFY_SOC_TEAMS_URL", HOOK),
            ("RESPONDER_NOTIFY_SOAR_URL", "https://soar.contoso.com/hook"),
            (
                "RESPONDER_NOTIFY_SOAR_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ]
        .into();
        let get = |name: &str| values.get(name).map(|v| v.to_string());
        let settings = NotifySettings::from_lookup(&get, &policy()).unwrap();
        assert_eq!(settings.secrets.len(), 3);
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("SECRETSIG") && !shown.contains("MfKQ"),
            "{shown}"
        );
        assert!(
            shown.contains("prod-01.westeurope.logic.azure.com"),
            "{shown}"
        );

        let missing = |skip: &str| {
            let get = |name: &str| {
                (name != skip)
                    .then(|| values.get(name).map(|v| v.to_string()))
                    .flatten()
            };
            NotifySettings::from_lookup(&get, &policy())
                .unwrap_err()
                .to_string()
        };
        assert!(
            missing("RESPONDER_NOTIFY_SOC_TEAMS_URL").contains("RESPONDER_NOTIFY_SOC_TEAMS_URL")
        );
        assert!(missing("RESPONDER_NOTIFY_SOAR_SECRET").contains("RESPONDER_NOTIFY_SOAR_SECRET"));

        let plain = |name: &str| {
            if name == "RESPONDER_NOTIFY_SOC_TEAMS_URL" {
                Some("http://hooks.example/x?sig=SECRETSIG".to_string())
            } else {
                values.get(name).map(|v| v.to_string())
            }
        };
        let err = NotifySettings::from_lookup(&plain, &policy())
            .unwrap_err()
            .to_string();
        assert!(err.contains("https") && !err.contains("SECRETSIG"), "{err}");
    }
}
