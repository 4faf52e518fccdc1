//! Approvals: signed, single-use, expiring decision links bound to a task's exact change, the
//! approver's identity, and the desk that turns a verified link into one journal decision.
//!
//! The same links, of kind `undo` and `confirm`, act on a done task's applied change: undo
//! restores the state before it (the worker carries it out), confirm keeps a containment past
//! its expiry.

pub mod endpoint;
mod link;
mod page;

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use crate::error::Error;
use crate::journal::{Journal, JournalEntry, JournalError, TaskState, Verdict};

pub use link::{ApprovalKey, DecisionLink, LinkError, LinkKind, LinkParams};

/// App setting: the key decision links are signed with (at least 32 characters).
pub const KEY: &str = "RESPONDER_APPROVAL_KEY";
/// App setting: the public URL of the decision endpoint.
pub const DECISION_URL: &str = "RESPONDER_DECISION_URL";
/// App setting: how long a decision link is valid, in hours.
pub const TTL_HOURS: &str = "RESPONDER_APPROVAL_TTL_HOURS";
/// App setting: `app_service_auth` (the signed-in approver must be allowed) or `link` (the
/// link alone is the credential).
pub const IDENTITY: &str = "RESPONDER_APPROVER_IDENTITY";
/// App setting: who may decide on any task, besides each task's recipients.
pub const APPROVERS: &str = "RESPONDER_APPROVERS";

/// How long a decision link is valid unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(72 * 3600);

/// Where the approver's identity comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApproverIdentity {
    /// The link alone is the credential (local runs): the decision is recorded as by `link`.
    Link,
    /// App Service Authentication signs the approver in and passes the
    /// `X-MS-CLIENT-PRINCIPAL*` headers; the approver must be a recipient or an approver.
    AppServiceAuth,
}

/// The approval settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// The signing key.
    pub key: ApprovalKey,
    /// The decision endpoint's public URL.
    pub decision_url: Url,
    /// How long links are valid.
    pub ttl: Duration,
    /// Where the approver's identity comes from.
    pub identity: ApproverIdentity,
    /// Who may decide on any task (compared case-insensitively).
    pub approvers: Vec<String>,
}

impl ApprovalSettings {
    /// Reads the settings; `None` when no key is set (approvals through links are off).
    /// `on_app_service` chooses the identity default (App Service Authentication there).
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        on_app_service: bool,
    ) -> Result<Option<Self>, Error> {
        let Some(key_text) = get(KEY) else {
            if let Some(other) = [DECISION_URL, TTL_HOURS, IDENTITY]
                .into_iter()
                .find(|name| get(name).is_some())
            {
                return Err(Error::Config(format!(
                    "{other} is set but {KEY} is not: decision links need a signing key"
                )));
            }
            return Ok(None);
        };
        let key = ApprovalKey::parse(&key_text)
            .map_err(|problem| Error::Config(format!("{KEY}: {problem}")))?;
        let url_text = get(DECISION_URL).ok_or_else(|| {
            Error::Config(format!(
                "{KEY} is set, so {DECISION_URL} must name the decision endpoint (https://<app>.azurewebsites.net/api/decide)"
            ))
        })?;
        let decision_url = Url::parse(&url_text).map_err(|err| {
            Error::Config(format!("{DECISION_URL}={url_text:?} is not a URL: {err}"))
        })?;
        let loopback = matches!(
            decision_url.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]")
        );
        if decision_url.scheme() != "https" && !(decision_url.scheme() == "http" && loopback) {
            return Err(Error::Config(format!(
                "{DECISION_URL}={url_text:?} must be https (http is allowed for loopback only)"
            )));
        }
        let ttl = match get(TTL_HOURS) {
            None => DEFAULT_TTL,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|hours| (1..=720).contains(hours))
                .map(|hours| Duration::from_secs(hours * 3600))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{TTL_HOURS}={text:?} is not a whole number of hours from 1 to 720"
                    ))
                })?,
        };
        let identity = match get(IDENTITY).as_deref() {
            None if on_app_service => ApproverIdentity::AppServiceAuth,
            None => ApproverIdentity::Link,
            Some("app_service_auth") => ApproverIdentity::AppServiceAuth,
            Some("link") => ApproverIdentity::Link,
            Some(other) => {
                return Err(Error::Config(format!(
                    "{IDENTITY}={other:?} must be app_service_auth or link"
                )))
            }
        };
        let approvers = get(APPROVERS)
            .map(|text| {
                text.split([',', ';'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(ApprovalSettings {
            key,
            decision_url,
            ttl,
            identity,
            approvers,
        }))
    }
}

/// The signed-in person, from App Service Authentication's headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approver {
    /// The sign-in name (UPN or e-mail).
    pub name: String,
}

#[derive(Deserialize)]
struct ClientPrincipal {
    #[serde(default)]
    claims: Vec<Claim>,
}

#[derive(Deserialize)]
struct Claim {
    typ: String,
    val: String,
}

impl Approver {
    /// Reads `X-MS-CLIENT-PRINCIPAL-NAME`, or the name claims of `X-MS-CLIENT-PRINCIPAL`
    /// (base64 JSON). App Service sets both after sign-in and strips them from requests it
    /// did not authenticate, so they can be trusted only behind App Service Authentication.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<Approver> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        if let Some(name) = header("x-ms-client-principal-name") {
            return Some(Approver { name });
        }
        let encoded = header("x-ms-client-principal")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let principal: ClientPrincipal = serde_json::from_slice(&bytes).ok()?;
        const NAME_CLAIMS: [&str; 5] = [
            "preferred_username",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
            "upn",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            "email",
        ];
        NAME_CLAIMS.iter().find_map(|wanted| {
            principal
                .claims
                .iter()
                .find(|claim| claim.typ == *wanted && !claim.val.trim().is_empty())
                .map(|claim| Approver {
                    name: claim.val.trim().to_string(),
                })
        })
    }
}

/// Why a decision (or the page) was refused; each answer has its own status and words.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The link itself is wrong.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// No such task in the journal.
    #[error("no task {0} is recorded")]
    UnknownTask(String),
    /// App Service Authentication passed no identity.
    #[error("sign in to decide (no signed-in identity reached the responder)")]
    SignInRequired,
    /// The signed-in person may not decide on this task.
    #[error("{0} is not a recipient of this task nor a configured approver")]
    NotAllowed(String),
    /// The task is not waiting for a decision (decided, expired, or never pending).
    #[error("{0}")]
    NotPending(String),
    /// The change was recomputed since the link was made.
    #[error("the change was recomputed since this link was sent (the link was made for change {linked}, the task now has {current}); decide on the new request instead")]
    ChangeDiffers {
        /// The hash in the link.
        linked: String,
        /// The hash recorded now.
        current: String,
    },
    /// The journal could not be read or written, or another undo of the task runs; try again.
    #[error("the journal is unavailable, try again: {0}")]
    Unavailable(String),
    /// The undo was tried and failed; the task stays done and the undo may be tried again.
    #[error("the undo failed; nothing is recorded as undone: {0}")]
    NotUndone(String),
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Refusal::Link(LinkError::Expired(_)) => StatusCode::GONE,
            Refusal::Link(LinkError::Malformed(_)) => StatusCode::BAD_REQUEST,
            Refusal::Link(LinkError::BadSignature) => StatusCode::FORBIDDEN,
            Refusal::UnknownTask(_) => StatusCode::NOT_FOUND,
            Refusal::SignInRequired => StatusCode::UNAUTHORIZED,
            Refusal::NotAllowed(_) => StatusCode::FORBIDDEN,
            Refusal::NotPending(_) | Refusal::ChangeDiffers { .. } => StatusCode::CONFLICT,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::NotUndone(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

fn describe_not_pending(entry: &JournalEntry) -> String {
    match (&entry.decision, entry.state) {
        (Some(decision), _) => format!(
            "this task was already decided: {} by {} at {}; it is now {}",
            decision.verdict,
            decision.by,
            decision
                .at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            entry.state
        ),
        (None, TaskState::Expired) => "the time to decide on this task ran out".to_string(),
        (None, state) => format!("this task is {state}; it is not waiting for a decision"),
    }
}

fn stamp(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Why an undo or confirm link no longer applies to its task.
fn describe_not_done(entry: &JournalEntry, kind: LinkKind) -> Option<String> {
    match entry.state {
        TaskState::Done => match (&entry.confirmation, kind) {
            (Some(confirmed), LinkKind::Confirm) => Some(format!(
                "this change was already confirmed by {} at {}",
                confirmed.by,
                stamp(confirmed.at)
            )),
            _ => None,
        },
        TaskState::Undone => {
            let by = entry
                .history
                .iter()
                .rev()
                .find(|event| event.to == TaskState::Undone)
                .map(|event| format!(" by {} at {}", event.actor, stamp(event.at)))
                .unwrap_or_default();
            Some(format!("this change was already undone{by}"))
        }
        state => Some(format!(
            "this task is {state}; there is no applied change to {kind}"
        )),
    }
}

/// Turns verified decision links into journal decisions.
#[derive(Clone, Debug)]
pub struct DecisionDesk {
    journal: Journal,
    settings: ApprovalSettings,
}

/// What the GET page shows.
#[derive(Clone, Debug)]
pub struct DecisionView {
    /// The task's journal entry.
    pub entry: JournalEntry,
    /// The link that was opened.
    pub link: DecisionLink,
    /// The decisions the page offers (the link's own, and always reject).
    pub offers: Vec<DecisionLink>,
    /// The signed-in approver, if any.
    pub approver: Option<Approver>,
}

impl DecisionDesk {
    /// A desk over `journal`.
    pub fn new(journal: Journal, settings: ApprovalSettings) -> Self {
        DecisionDesk { journal, settings }
    }

    /// The settings.
    pub fn settings(&self) -> &ApprovalSettings {
        &self.settings
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The approve and reject links of a pending task, valid for the configured time from
    /// `now`. Fails when the task has no recorded preview (nothing to bind the links to).
    pub fn links(
        &self,
        entry: &JournalEntry,
        now: OffsetDateTime,
    ) -> Result<Vec<(Verdict, Url)>, Error> {
        let hash = entry.preview_hash.as_deref().ok_or_else(|| {
            Error::Permanent(format!(
                "task {} has no recorded change to decide on",
                entry.message_id
            ))
        })?;
        let expires = (now + self.settings.ttl).unix_timestamp();
        Ok([Verdict::Approve, Verdict::Reject]
            .into_iter()
            .map(|verdict| {
                let link = DecisionLink::sign(
                    &self.settings.key,
                    &entry.message_id,
                    verdict,
                    hash,
                    expires,
                );
                (verdict, link.url(&self.settings.decision_url))
            })
            .collect())
    }

    /// The undo and confirm links of a done task, bound to its applied change and valid for
    /// the configured time from `now`. Fails when the task recorded no change.
    pub fn change_links(
        &self,
        entry: &JournalEntry,
        now: OffsetDateTime,
    ) -> Result<Vec<(LinkKind, Url)>, Error> {
        let hash = entry.preview_hash.as_deref().ok_or_else(|| {
            Error::Permanent(format!(
                "task {} has no recorded change to undo",
                entry.message_id
            ))
        })?;
        let expires = (now + self.settings.ttl).unix_timestamp();
        Ok([LinkKind::Undo, LinkKind::Confirm]
            .into_iter()
            .map(|kind| {
                let link =
                    DecisionLink::sign(&self.settings.key, &entry.message_id, kind, hash, expires);
                (kind, link.url(&self.settings.decision_url))
            })
            .collect())
    }

    /// Checks a link and reads its task for the page. Nothing is decided.
    pub async fn view(
        &self,
        params: &LinkParams,
        approver: Option<Approver>,
        now: OffsetDateTime,
    ) -> Result<DecisionView, Refusal> {
        let (link, entry) = self.check(params, now).await?;
        // An approve link offers approve and reject; a reject link offers only reject (it
        // must not become a way to approve). Undo and confirm links offer only themselves.
        let mut offers = vec![link.clone()];
        if link.kind == LinkKind::Approve {
            offers.push(DecisionLink::sign(
                &self.settings.key,
                &link.message_id,
                Verdict::Reject,
                &link.preview_hash,
                link.expires,
            ));
        }
        Ok(DecisionView {
            entry,
            link,
            offers,
            approver,
        })
    }

    /// Records the decision of a verified link, once: the approver (when App Service
    /// Authentication is the identity source) must be allowed, the task must still be
    /// pending, and its change must still be the one the link was made for.
    pub async fn decide(
        &self,
        params: &LinkParams,
        approver: Option<Approver>,
        now: OffsetDateTime,
    ) -> Result<JournalEntry, Refusal> {
        let (link, entry) = self.check(params, now).await?;
        let actor = self.authorize(&entry, approver)?;
        let Some(verdict) = link.kind.verdict() else {
            return match link.kind {
                LinkKind::Confirm => self.record_confirmation(&link, &actor).await,
                _ => Err(Refusal::Unavailable(
                    "undo links are carried out by the workers, which are not configured on this instance".into(),
                )),
            };
        };
        let decided = self
            .journal
            .decide(&link.message_id, verdict, Some(&link.preview_hash), &actor)
            .await;
        match decided {
            Ok(entry) => Ok(entry),
            Err(JournalError::PreviewChanged {
                decided, current, ..
            }) => Err(Refusal::ChangeDiffers {
                linked: decided,
                current,
            }),
            Err(JournalError::IllegalTransition { .. }) => {
                let entry = self.load(&link).await?;
                Err(Refusal::NotPending(describe_not_pending(&entry)))
            }
            Err(JournalError::NotFound(id)) => Err(Refusal::UnknownTask(id.to_string())),
            Err(err) => Err(Refusal::Unavailable(err.to_string())),
        }
    }

    /// Checks an undo link for its POST: the link, the task still done on the change the link
    /// names, and the approver (same rules as a decision). Answers the link and who acts; the
    /// worker then carries the undo out once.
    pub async fn authorize_undo(
        &self,
        params: &LinkParams,
        approver: Option<Approver>,
        now: OffsetDateTime,
    ) -> Result<(DecisionLink, String), Refusal> {
        let (link, entry) = self.check(params, now).await?;
        if link.kind != LinkKind::Undo {
            return Err(Refusal::Link(LinkError::Malformed(
                "this is not an undo link".into(),
            )));
        }
        let actor = self.authorize(&entry, approver)?;
        Ok((link, actor))
    }

    /// Who acts on a task through a link: `link` when the link alone is the credential, else
    /// the signed-in person, who must be a recipient of the task or a configured approver.
    fn authorize(
        &self,
        entry: &JournalEntry,
        approver: Option<Approver>,
    ) -> Result<String, Refusal> {
        match self.settings.identity {
            ApproverIdentity::Link => Ok("link".to_string()),
            ApproverIdentity::AppServiceAuth => {
                let approver = approver.ok_or(Refusal::SignInRequired)?;
                let allowed = entry
                    .recipients
                    .iter()
                    .chain(&self.settings.approvers)
                    .any(|who| who.eq_ignore_ascii_case(&approver.name));
                if !allowed {
                    return Err(Refusal::NotAllowed(approver.name));
                }
                Ok(approver.name)
            }
        }
    }

    async fn record_confirmation(
        &self,
        link: &DecisionLink,
        actor: &str,
    ) -> Result<JournalEntry, Refusal> {
        match self.journal.confirm(&link.message_id, actor).await {
            Ok(entry) if entry.confirmation.as_ref().is_some_and(|c| c.by == actor) => Ok(entry),
            // Another confirmation landed first: that one stands.
            Ok(entry) => Err(Refusal::NotPending(
                describe_not_done(&entry, LinkKind::Confirm).unwrap_or_default(),
            )),
            Err(JournalError::IllegalTransition { .. }) => {
                let entry = self.load(link).await?;
                Err(Refusal::NotPending(
                    describe_not_done(&entry, LinkKind::Confirm).unwrap_or_default(),
                ))
            }
            Err(JournalError::NotFound(id)) => Err(Refusal::UnknownTask(id.to_string())),
            Err(err) => Err(Refusal::Unavailable(err.to_string())),
        }
    }

    async fn load(&self, link: &DecisionLink) -> Result<JournalEntry, Refusal> {
        self.journal
            .get(&link.message_id)
            .await
            .map_err(|err| Refusal::Unavailable(err.to_string()))?
            .ok_or_else(|| Refusal::UnknownTask(link.message_id.to_string()))
    }

    /// Verifies the link and that its task is pending (approve, reject) or done (undo,
    /// confirm) on the change the link names.
    async fn check(
        &self,
        params: &LinkParams,
        now: OffsetDateTime,
    ) -> Result<(DecisionLink, JournalEntry), Refusal> {
        let link = DecisionLink::parse(params)?;
        link.verify(&self.settings.key, now.unix_timestamp())?;
        let entry = self.load(&link).await?;
        if link.kind.verdict().is_some() {
            if entry.state != TaskState::PendingApproval {
                return Err(Refusal::NotPending(describe_not_pending(&entry)));
            }
        } else if let Some(reason) = describe_not_done(&entry, link.kind) {
            return Err(Refusal::NotPending(reason));
        }
        let current = entry.preview_hash.clone().unwrap_or_else(|| "none".into());
        if current != link.preview_hash {
            return Err(Refusal::ChangeDiffers {
                linked: link.preview_hash.clone(),
                current,
            });
        }
        Ok((link, entry))
    }
}

#[cfg(test)]
mod tests;
