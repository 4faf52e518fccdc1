//! The executor error: its kind tells the worker whether to retry later (abandon with a
//! delay), re-preview (conflict), record a refusal, or record a permanent failure.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::azure::{AzureError, AzureErrorKind};
use crate::error::Error;

/// Why an executor will not act: a guard rail, with the reason recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The target is a whole subscription (or wider).
    SubscriptionWide,
    /// The change would edit a network security group other resources share.
    SharedNetworkSecurityGroup,
    /// The target could only be matched loosely (by name or substring), not by exact id.
    FuzzyMatch,
    /// The target is one of the responder's own identities.
    OwnIdentity,
    /// The policy excludes the principal from containment.
    ExcludedPrincipal,
    /// The action always needs a person's approval and the task was not approved.
    RequiresApproval,
    /// The Defender alert could not be read back, or differs from the task's.
    AlertNotAuthenticated,
    /// The blast-radius budget of the subscription is spent.
    BlastRadiusExceeded,
    /// The target does not exist (nothing to contain).
    TargetNotFound,
    /// The target is of a kind this action cannot act on.
    UnsupportedTarget,
    /// The change can only be made by a person (a secret whose source the responder cannot
    /// change): the detail is the notice saying what to change where.
    ManualRotation,
    /// The object was changed by someone else since the alert (a newer version): the task stops.
    VersionChanged,
}

impl RefusalReason {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::SubscriptionWide => "subscription_wide",
            RefusalReason::SharedNetworkSecurityGroup => "shared_network_security_group",
            RefusalReason::FuzzyMatch => "fuzzy_match",
            RefusalReason::OwnIdentity => "own_identity",
            RefusalReason::ExcludedPrincipal => "excluded_principal",
            RefusalReason::RequiresApproval => "requires_approval",
            RefusalReason::AlertNotAuthenticated => "alert_not_authenticated",
            RefusalReason::BlastRadiusExceeded => "blast_radius_exceeded",
            RefusalReason::TargetNotFound => "target_not_found",
            RefusalReason::UnsupportedTarget => "unsupported_target",
            RefusalReason::ManualRotation => "manual_rotation",
            RefusalReason::VersionChanged => "version_changed",
        }
    }
}

/// A refusal: the guard rail and the specifics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Which guard rail.
    pub reason: RefusalReason,
    /// What exactly, in words a person can check.
    pub detail: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused ({}): {}", self.reason.as_str(), self.detail)
    }
}

/// What the worker does with a failed step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorErrorKind {
    /// Try again later (abandon the message with the delay): throttling, timeouts, outages.
    Retryable,
    /// The resource changed since the preview: the approved change no longer applies.
    Conflict,
    /// A guard rail refused: record the reason, do nothing.
    Refused,
    /// Record the failure; retrying cannot help.
    Permanent,
}

/// A failed executor step.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExecutorError {
    /// Try again after `retry_after` (when the service said).
    #[error("retryable: {reason}")]
    Retryable {
        /// What failed.
        reason: String,
        /// How long to wait.
        retry_after: Option<Duration>,
    },
    /// The resource is not what the preview saw.
    #[error("conflict on {resource}: {detail}")]
    Conflict {
        /// The resource.
        resource: String,
        /// What differs.
        detail: String,
    },
    /// A guard rail refused.
    #[error("{0}")]
    Refused(Refusal),
    /// Retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl ExecutorError {
    /// A refusal.
    pub fn refused(reason: RefusalReason, detail: impl Into<String>) -> Self {
        ExecutorError::Refused(Refusal {
            reason,
            detail: detail.into(),
        })
    }

    /// A conflict on `resource`.
    pub fn conflict(resource: impl Into<String>, detail: impl Into<String>) -> Self {
        ExecutorError::Conflict {
            resource: resource.into(),
            detail: detail.into(),
        }
    }

    /// The kind.
    pub fn kind(&self) -> ExecutorErrorKind {
        match self {
            ExecutorError::Retryable { .. } => ExecutorErrorKind::Retryable,
            ExecutorError::Conflict { .. } => ExecutorErrorKind::Conflict,
            ExecutorError::Refused(_) => ExecutorErrorKind::Refused,
            ExecutorError::Permanent(_) => ExecutorErrorKind::Permanent,
        }
    }

    /// How long to wait before retrying, when retryable and the service said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExecutorError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The refusal, when a guard rail refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ExecutorError::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }
}

impl From<AzureError> for ExecutorError {
    fn from(err: AzureError) -> Self {
        if err.is_retryable() {
            return ExecutorError::Retryable {
                retry_after: err.retry_after,
                reason: err.to_string(),
            };
        }
        match err.kind {
            AzureErrorKind::Conflict => ExecutorError::Conflict {
                resource: err.url.clone(),
                detail: err.to_string(),
            },
            _ => ExecutorError::Permanent(err.to_string()),
        }
    }
}

impl From<ExecutorError> for Error {
    fn from(err: ExecutorError) -> Self {
        match err {
            ExecutorError::Retryable { .. } => {
                let retry_after = err.retry_after();
                let error = Error::transient(err.to_string());
                match retry_after {
                    Some(delay) => error.with_retry_after(delay),
                    None => error,
                }
            }
            other => Error::permanent(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_errors_map_to_the_worker_decision() {
        let throttled = AzureError {
            status: Some(429),
            retry_after: Some(Duration::from_secs(7)),
            ..AzureError::local(AzureErrorKind::Throttled, "PUT", "u", "slow down")
        };
        let err = ExecutorError::from(throttled);
        assert_eq!(err.kind(), ExecutorErrorKind::Retryable);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(Error::from(err).is_retryable());

        let busy = AzureError::local(AzureErrorKind::Busy, "PUT", "u", "busy");
        assert_eq!(
            ExecutorError::from(busy).kind(),
            ExecutorErrorKind::Retryable
        );
        let conflict = AzureError::local(AzureErrorKind::Conflict, "PUT", "u", "exists");
        assert_eq!(
            ExecutorError::from(conflict).kind(),
            ExecutorErrorKind::Conflict
        );
        let forbidden = AzureError::local(AzureErrorKind::Forbidden, "PUT", "u", "no");
        let err = ExecutorError::from(forbidden);
        assert_eq!(err.kind(), ExecutorErrorKind::Permanent);
        assert!(!Error::from(err).is_retryable());
        let refused = ExecutorError::refused(RefusalReason::SharedNetworkSecurityGroup, "nsg-x");
        assert!(!Error::from(refused).is_retryable());
    }
}
