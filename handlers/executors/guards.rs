//! Guard rails shared by the executors and the worker: scope and identity refusals, the
//! blast-radius budget, and authenticating the alert against Defender for Cloud before any
//! live containment.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::error::{ExecutorError, RefusalReason};
use super::ExecutorContext;
use crate::azure::arm::api_version;
use crate::config::azure::IsolationSettings;
use crate::domain::ids::{AzureResourceId, Guid};
use crate::domain::task::Task;

/// Refuses a target that is a whole subscription, a management group or the tenant root.
pub fn refuse_wide_scope(id: &AzureResourceId) -> Result<(), ExecutorError> {
    if id.is_subscription() || id.subscription_id().is_none() {
        return Err(ExecutorError::refused(
            RefusalReason::SubscriptionWide,
            format!(
                "{} is a subscription-wide (or wider) scope; containment there needs a person",
                id.as_str()
            ),
        ));
    }
    Ok(())
}

/// Refuses the responder's own identities and the principals the policy excludes.
pub fn refuse_protected_principal(
    object_id: &str,
    settings: &IsolationSettings,
) -> Result<(), ExecutorError> {
    let matches = |list: &[Guid]| {
        list.iter()
            .any(|g| g.as_str().eq_ignore_ascii_case(object_id))
    };
    if matches(&settings.self_object_ids) {
        return Err(ExecutorError::refused(
            RefusalReason::OwnIdentity,
            format!("{object_id} is the responder's own identity"),
        ));
    }
    if matches(&settings.excluded_principals) {
        return Err(ExecutorError::refused(
            RefusalReason::ExcludedPrincipal,
            format!("{object_id} is excluded from containment by policy"),
        ));
    }
    Ok(())
}

/// Containment changes per subscription in a sliding hour: beyond the limit the worker trips
/// to notify-only for that subscription and says so.
#[derive(Debug)]
pub struct BlastRadius {
    limit_per_hour: u32,
    changes: Mutex<HashMap<String, VecDeque<SystemTime>>>,
}

/// The window of the budget.
const HOUR: Duration = Duration::from_secs(3600);

impl BlastRadius {
    /// A budget of `limit_per_hour` changes per subscription.
    pub fn new(limit_per_hour: u32) -> Self {
        BlastRadius {
            limit_per_hour,
            changes: Mutex::new(HashMap::new()),
        }
    }

    /// A budget that already counts these changes (from the journal, so every instance and
    /// a restart agree).
    pub fn with_history<I>(limit_per_hour: u32, history: I) -> Self
    where
        I: IntoIterator<Item = (String, SystemTime)>,
    {
        let budget = BlastRadius::new(limit_per_hour);
        {
            let mut changes = budget.lock();
            for (subscription, at) in history {
                changes
                    .entry(subscription.to_ascii_lowercase())
                    .or_default()
                    .push_back(at);
            }
            for times in changes.values_mut() {
                times.make_contiguous().sort();
            }
        }
        budget
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<SystemTime>>> {
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many changes `subscription` may still take at `now`.
    pub fn remaining(&self, subscription: &str, now: SystemTime) -> u32 {
        let mut changes = self.lock();
        let times = changes
            .entry(subscription.to_ascii_lowercase())
            .or_default();
        prune(times, now);
        self.limit_per_hour.saturating_sub(times.len() as u32)
    }

    /// Counts one change in each of `subscriptions` at `now`, or refuses (counting nothing)
    /// when any of them has spent its budget.
    pub fn try_consume(
        &self,
        subscriptions: &[String],
        now: SystemTime,
    ) -> Result<(), ExecutorError> {
        let mut changes = self.lock();
        for subscription in subscriptions {
            let times = changes
                .entry(subscription.to_ascii_lowercase())
                .or_default();
            prune(times, now);
            if times.len() as u32 >= self.limit_per_hour {
                return Err(ExecutorError::refused(
                    RefusalReason::BlastRadiusExceeded,
                    format!(
                        "{} containment changes in subscription {subscription} within the last hour (limit {}): notify only until the budget frees up",
                        times.len(),
                        self.limit_per_hour
                    ),
                ));
            }
        }
        for subscription in subscriptions {
            changes
                .entry(subscription.to_ascii_lowercase())
                .or_default()
                .push_back(now);
        }
        Ok(())
    }
}

fn prune(times: &mut VecDeque<SystemTime>, now: SystemTime) {
    while let Some(first) = times.front() {
        if now.duration_since(*first).unwrap_or_default() >= HOUR {
            times.pop_front();
        } else {
            break;
        }
    }
}

/// The Defender alert as read back from Defender for Cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthenticatedAlert {
    /// Its ARM id (`…/Microsoft.Security/locations/{loc}/alerts/{name}`).
    pub id: String,
    /// Its status (`Active`, `InProgress`, …).
    pub status: String,
}

/// The subscription the task's alert lives in: the target's, else the alert resource's.
pub fn alert_subscription(task: &Task) -> Option<String> {
    [task.target.as_str(), task.alert.resource.as_str()]
        .iter()
        .filter_map(|text| AzureResourceId::parse(text).ok())
        .find_map(|id| id.subscription_id().map(str::to_string))
}

/// Reads the task's alert back from Defender for Cloud
/// (`Microsoft.Security/locations/{loc}/alerts/{systemAlertId}`) and refuses live
/// containment when it does not exist, is of another type, is about another resource, or was
/// already dismissed or resolved: a forged alert through the trigger URL moves nothing.
pub async fn authenticate_alert(
    task: &Task,
    ctx: &ExecutorContext,
) -> Result<AuthenticatedAlert, ExecutorError> {
    let refuse =
        |detail: String| ExecutorError::refused(RefusalReason::AlertNotAuthenticated, detail);
    let system_alert_id = task.alert.system_alert_id.as_str();
    let subscription = alert_subscription(task).ok_or_else(|| {
        refuse(format!(
            "cannot tell which subscription alert {system_alert_id} belongs to"
        ))
    })?;
    let listing = ctx
        .clients
        .arm
        .list(
            &format!("/subscriptions/{subscription}/providers/Microsoft.Security/alerts"),
            api_version::SECURITY_ALERTS,
        )
        .await?;
    let found = listing.iter().find(|alert| {
        let name = alert.get("name").and_then(Value::as_str);
        let system = alert
            .pointer("/properties/systemAlertId")
            .and_then(Value::as_str);
        name == Some(system_alert_id) || system == Some(system_alert_id)
    });
    let Some(id) = found.and_then(|a| a.get("id")).and_then(Value::as_str) else {
        return Err(refuse(format!(
            "Defender for Cloud has no alert {system_alert_id} in subscription {subscription}"
        )));
    };
    // Read the alert itself back at its own id.
    let Some(alert) = ctx
        .clients
        .arm
        .get_optional(id, api_version::SECURITY_ALERTS)
        .await?
    else {
        return Err(refuse(format!("alert {id} could not be read back")));
    };
    let properties = alert.get("properties").cloned().unwrap_or(Value::Null);
    let text = |name: &str| properties.get(name).and_then(Value::as_str).unwrap_or("");
    if !text("alertType").eq_ignore_ascii_case(&task.alert.alert_type) {
        return Err(refuse(format!(
            "alert {system_alert_id} is of type {:?} in Defender, the task says {:?}",
            text("alertType"),
            task.alert.alert_type
        )));
    }
    if let Ok(resource) = AzureResourceId::parse(&task.alert.resource) {
        let named = properties
            .get("resourceIdentifiers")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter().any(|entry| {
                    entry
                        .get("azureResourceId")
                        .and_then(Value::as_str)
                        .and_then(|text| AzureResourceId::parse(text).ok())
                        .is_some_and(|id| id == resource)
                })
            })
            .unwrap_or(false);
        if !named {
            return Err(refuse(format!(
                "alert {system_alert_id} in Defender is not about {}",
                resource.as_str()
            )));
        }
    }
    let status = text("status").to_string();
    if status.eq_ignore_ascii_case("Dismissed") || status.eq_ignore_ascii_case("Resolved") {
        return Err(refuse(format!(
            "alert {system_alert_id} is {status} in Defender"
        )));
    }
    Ok(AuthenticatedAlert {
        id: id.to_string(),
        status,
    })
}

/// Marks the authenticated alert `InProgress` in Defender for Cloud (Security Admin).
pub async fn mark_alert_in_progress(
    alert: &AuthenticatedAlert,
    ctx: &ExecutorContext,
) -> Result<(), ExecutorError> {
    if alert.status.eq_ignore_ascii_case("InProgress") {
        return Ok(());
    }
    ctx.clients
        .arm
        .post(
            &format!("{}/inProgress", alert.id),
            api_version::SECURITY_ALERTS,
            None,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blast_radius_trips_at_its_limit_and_frees_after_an_hour() {
        let budget = BlastRadius::new(2);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let subs = vec!["S1".to_string()];
        budget.try_consume(&subs, start).unwrap();
        budget
            .try_consume(&subs, start + Duration::from_secs(60))
            .unwrap();
        let err = budget
            .try_consume(&subs, start + Duration::from_secs(120))
            .unwrap_err();
        assert_eq!(
            err.refusal().unwrap().reason,
            RefusalReason::BlastRadiusExceeded
        );
        assert_eq!(budget.remaining("s1", start + Duration::from_secs(120)), 0);
        // Another subscription is unaffected.
        budget.try_consume(&["s2".to_string()], start).unwrap();
        // The first change leaves the window after an hour.
        budget
            .try_consume(&subs, start + HOUR + Duration::from_secs(1))
            .unwrap();
    }

    #[test]
    fn history_counts_against_the_budget() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let budget =
            BlastRadius::with_history(1, [("s1".to_string(), now - Duration::from_secs(10))]);
        assert!(budget.try_consume(&["s1".to_string()], now).is_err());
    }

    #[test]
    fn wide_scopes_and_protected_principals_are_refused() {
        let sub = AzureResourceId::parse("/subscriptions/0000").unwrap();
        assert_eq!(
            refuse_wide_scope(&sub)
                .unwrap_err()
                .refusal()
                .unwrap()
                .reason,
            RefusalReason::SubscriptionWide
        );
        let vm = AzureResourceId::parse(
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
        )
        .unwrap();
        assert!(refuse_wide_scope(&vm).is_ok());
        let me = Guid::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let settings = IsolationSettings {
            self_object_ids: vec![me],
            ..IsolationSettings::default()
        };
        let err = refuse_protected_principal("11111111-2222-3333-4444-555555555555", &settings)
            .unwrap_err();
        assert_eq!(err.refusal().unwrap().reason, RefusalReason::OwnIdentity);
        assert!(
            refuse_protected_principal("21111111-2222-3333-4444-555555555555", &settings).is_ok()
        );
    }
}
