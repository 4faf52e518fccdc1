//! Decision links: `…/api/decide?m=<message id>&d=<approve|reject|undo|confirm>&h=<change sha256>&exp=<unix>&sig=<…>`,
//! signed with HMAC-SHA256 so a link cannot be made, widened or extended by anyone without the key.
//!
//! `approve` and `reject` decide on a pending task's previewed change; `undo` and `confirm`
//! act on a done task's applied change (restore the prior state, or keep it past the
//! containment expiry).

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

use crate::domain::MessageId;
use crate::journal::Verdict;

/// The key decision links are signed with (at least 32 bytes). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApprovalKey(Vec<u8>);

impl std::fmt::Debug for ApprovalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApprovalKey(***)")
    }
}

impl ApprovalKey {
    /// The key from its app-setting text; the error never echoes the value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = text.trim().as_bytes().to_vec();
        if bytes.len() < 32 {
            return Err(format!(
                "the key is {} characters; use at least 32 random characters (e.g. `openssl rand -base64 48`)",
                bytes.len()
            ));
        }
        Ok(ApprovalKey(bytes))
    }

    fn mac(&self, link: &LinkFields<'_>) -> Hmac<Sha256> {
        #[allow(clippy::expect_used)] // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        // One field per line: no field can contain a newline (they are checked on parse).
        mac.update(
            format!(
                "defender-responder/decision/v1\n{}\n{}\n{}\n{}",
                link.message_id, link.verdict, link.preview_hash, link.expires
            )
            .as_bytes(),
        );
        mac
    }
}

struct LinkFields<'a> {
    message_id: &'a str,
    verdict: &'a str,
    preview_hash: &'a str,
    expires: i64,
}

/// Why a link was refused before the journal was even read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// A parameter is missing or malformed.
    #[error("the decision link is incomplete or damaged: {0}")]
    Malformed(String),
    /// The signature does not match: the link was altered or not made by this responder.
    #[error("the decision link's signature does not match (altered, or signed with another key)")]
    BadSignature,
    /// The link's time is up.
    #[error("the decision link expired at {0} (unix time); ask for a new one")]
    Expired(i64),
}

/// What a link does when its button is pressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// Approve a pending task's change.
    Approve,
    /// Reject a pending task's change.
    Reject,
    /// Restore the state before a done task's change.
    Undo,
    /// Keep a done containment: no expiry undoes it.
    Confirm,
}

impl LinkKind {
    /// The `d` parameter's value.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Approve => "approve",
            LinkKind::Reject => "reject",
            LinkKind::Undo => "undo",
            LinkKind::Confirm => "confirm",
        }
    }

    /// Parses the `d` parameter.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "undo" => Some(LinkKind::Undo),
            "confirm" => Some(LinkKind::Confirm),
            other => Verdict::parse(other).map(LinkKind::from),
        }
    }

    /// The decision on a pending task, for approve and reject links.
    pub fn verdict(self) -> Option<Verdict> {
        match self {
            LinkKind::Approve => Some(Verdict::Approve),
            LinkKind::Reject => Some(Verdict::Reject),
            LinkKind::Undo | LinkKind::Confirm => None,
        }
    }
}

impl From<Verdict> for LinkKind {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Approve => LinkKind::Approve,
            Verdict::Reject => LinkKind::Reject,
        }
    }
}

impl std::fmt::Display for LinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signed decision on one task's exact change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionLink {
    /// The task.
    pub message_id: MessageId,
    /// What the link does: approve, reject, undo or confirm.
    pub kind: LinkKind,
    /// SHA-256 (hex) of the change the link was made for (previewed, or applied).
    pub preview_hash: String,
    /// Unix seconds after which the link is refused.
    pub expires: i64,
    /// base64url HMAC-SHA256 over the other fields.
    pub signature: String,
}

/// The query (GET) or form (POST) parameters of a link.
#[derive(Debug, Default, Deserialize)]
pub struct LinkParams {
    /// Message id.
    pub m: Option<String>,
    /// Decision.
    pub d: Option<String>,
    /// Preview hash.
    pub h: Option<String>,
    /// Expiry (unix seconds).
    pub exp: Option<String>,
    /// Signature.
    pub sig: Option<String>,
}

impl DecisionLink {
    /// Signs a link.
    pub fn sign(
        key: &ApprovalKey,
        message_id: &MessageId,
        kind: impl Into<LinkKind>,
        preview_hash: &str,
        expires: i64,
    ) -> Self {
        let kind = kind.into();
        let fields = LinkFields {
            message_id: message_id.as_str(),
            verdict: kind.as_str(),
            preview_hash,
            expires,
        };
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(key.mac(&fields).finalize().into_bytes());
        DecisionLink {
            message_id: message_id.clone(),
            kind,
            preview_hash: preview_hash.to_string(),
            expires,
            signature,
        }
    }

    /// The link as a URL under `endpoint` (the decision endpoint's public URL).
    pub fn url(&self, endpoint: &Url) -> Url {
        let mut url = endpoint.clone();
        url.query_pairs_mut()
            .clear()
            .append_pair("m", self.message_id.as_str())
            .append_pair("d", self.kind.as_str())
            .append_pair("h", &self.preview_hash)
            .append_pair("exp", &self.expires.to_string())
            .append_pair("sig", &self.signature);
        url
    }

    /// Reads a link's parameters (shape only; [`DecisionLink::verify`] checks it).
    pub fn parse(params: &LinkParams) -> Result<Self, LinkError> {
        let field = |value: &Option<String>, name: &str| -> Result<String, LinkError> {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| LinkError::Malformed(format!("`{name}` is missing")))
        };
        let m = field(&params.m, "m")?;
        if m.len() > 128
            || !m
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(LinkError::Malformed("`m` is not a task id".into()));
        }
        let message_id: MessageId = serde_json::from_value(serde_json::Value::String(m))
            .map_err(|_| LinkError::Malformed("`m` is not a task id".into()))?;
        let d = field(&params.d, "d")?;
        let kind = LinkKind::parse(&d).ok_or_else(|| {
            LinkError::Malformed("`d` must be approve, reject, undo or confirm".into())
        })?;
        let preview_hash = field(&params.h, "h")?;
        if preview_hash.len() != 64 || !preview_hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(LinkError::Malformed("`h` is not a SHA-256 hash".into()));
        }
        let expires = field(&params.exp, "exp")?
            .parse::<i64>()
            .map_err(|_| LinkError::Malformed("`exp` is not a unix time".into()))?;
        let signature = field(&params.sig, "sig")?;
        Ok(DecisionLink {
            message_id,
            kind,
            preview_hash,
            expires,
            signature,
        })
    }

    /// Checks the signature (in constant time) and the expiry against `now` (unix seconds).
    pub fn verify(&self, key: &ApprovalKey, now: i64) -> Result<(), LinkError> {
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.signature)
            .map_err(|_| LinkError::BadSignature)?;
        let fields = LinkFields {
            message_id: self.message_id.as_str(),
            verdict: self.kind.as_str(),
            preview_hash: &self.preview_hash,
            expires: self.expires,
        };
        key.mac(&fields)
            .verify_slice(&signature)
            .map_err(|_| LinkError::BadSignature)?;
        if now > self.expires {
            return Err(LinkError::Expired(self.expires));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Action;

    fn key() -> ApprovalKey {
        ApprovalKey::parse("0123456789abcdef0123456789abcdef-test-key").unwrap()
    }

    fn params_of(url: &Url) -> LinkParams {
        let pairs: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        LinkParams {
            m: pairs.get("m").cloned(),
            d: pairs.get("d").cloned(),
            h: pairs.get("h").cloned(),
            exp: pairs.get("exp").cloned(),
            sig: pairs.get("sig").cloned(),
        }
    }

    #[test]
    fn a_signed_link_round_trips_through_its_url_and_verifies() {
        let id = MessageId::derive("sys", Action::EnableKeyVaultFirewall, "kv");
        let hash = "ab".repeat(32);
        let link = DecisionLink::sign(&key(), &id, Verdict::Approve, &hash, 2_000);
        let endpoint = Url::parse("https://responder.example/api/decide").unwrap();
        let url = link.url(&endpoint);
        assert!(url
            .as_str()
            .starts_with("https://responder.example/api/decide?m=dr-"));
        let parsed = DecisionLink::parse(&params_of(&url)).unwrap();
        assert_eq!(parsed, link);
        parsed.verify(&key(), 1_999).unwrap();
        assert_eq!(parsed.verify(&key(), 2_001), Err(LinkError::Expired(2_000)));
    }

    #[test]
    fn changing_any_field_or_the_key_breaks_the_signature() {
        let id = MessageId::derive("sys", Action::EnableKeyVaultFirewall, "kv");
        let hash = "ab".repeat(32);
        let link = DecisionLink::sign(&key(), &id, Verdict::Reject, &hash, 2_000);
        let mut approve = link.clone();
        approve.kind = LinkKind::Approve;
        assert_eq!(approve.verify(&key(), 0), Err(LinkError::BadSignature));
        let mut later = link.clone();
        later.expires += 3600;
        assert_eq!(later.verify(&key(), 0), Err(LinkError::BadSignature));
        let mut other_change = link.clone();
        other_change.preview_hash = "cd".repeat(32);
        assert_eq!(other_change.verify(&key(), 0), Err(LinkError::BadSignature));
        let mut undo = link.clone();
        undo.kind = LinkKind::Undo;
        assert_eq!(undo.verify(&key(), 0), Err(LinkError::BadSignature));
        let mut other_task = link.clone();
        other_task.message_id = MessageId::derive("sys", Action::EnableKeyVaultFirewall, "kv2");
        assert_eq!(other_task.verify(&key(), 0), Err(LinkError::BadSignature));
        let other_key = ApprovalKey::parse("another-key-another-key-another-key").unwrap();
        assert_eq!(link.verify(&other_key, 0), Err(LinkError::BadSignature));
        link.verify(&key(), 0).unwrap();
    }

    #[test]
    fn malformed_links_name_the_parameter_and_short_keys_are_refused() {
        let err = DecisionLink::parse(&LinkParams::default()).unwrap_err();
        assert!(err.to_string().contains("`m`"), "{err}");
        let err = DecisionLink::parse(&LinkParams {
            m: Some("dr-1".into()),
            d: Some("maybe".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("`d`"), "{err}");
        let err = ApprovalKey::parse("short").unwrap_err();
        assert!(!err.contains("short"), "{err}");
        assert!(!format!("{:?}", key()).contains("0123"));
    }
}
