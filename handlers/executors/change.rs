//! What an executor previews and records: the exact requests of a change (hashed for
//! approvals), the prior state undo restores, what apply sent, and what verify read back.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::azure::Api;

/// The HTTP method of a planned write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WriteMethod {
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
}

impl WriteMethod {
    /// The method for reqwest.
    pub fn as_method(self) -> reqwest::Method {
        match self {
            WriteMethod::Put => reqwest::Method::PUT,
            WriteMethod::Patch => reqwest::Method::PATCH,
            WriteMethod::Post => reqwest::Method::POST,
            WriteMethod::Delete => reqwest::Method::DELETE,
        }
    }

    /// `PUT`, `PATCH`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMethod::Put => "PUT",
            WriteMethod::Patch => "PATCH",
            WriteMethod::Post => "POST",
            WriteMethod::Delete => "DELETE",
        }
    }
}

/// One write exactly as it will be sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedRequest {
    /// Which API (and so which token and budget).
    pub api: Api,
    /// The method.
    pub method: WriteMethod,
    /// The absolute URL, with its api-version.
    pub url: String,
    /// The JSON body, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl PlannedRequest {
    /// A planned request.
    pub fn new(api: Api, method: WriteMethod, url: impl Into<String>, body: Option<Value>) -> Self {
        PlannedRequest {
            api,
            method,
            url: url.into(),
            body,
        }
    }
}

/// The exact change: a one-line summary and every write, in order. Approvals bind to
/// [`Change::hash`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// What it does, for people ("would PATCH … networkAcls …").
    pub summary: String,
    /// The writes, in the order they are sent.
    pub requests: Vec<PlannedRequest>,
}

impl Change {
    /// A change.
    pub fn new(summary: impl Into<String>, requests: Vec<PlannedRequest>) -> Self {
        Change {
            summary: summary.into(),
            requests,
        }
    }

    /// Nothing to write: the target is already in the contained state.
    pub fn is_noop(&self) -> bool {
        self.requests.is_empty()
    }

    /// SHA-256 (hex) of the canonical JSON of the requests and summary: the same change
    /// always hashes the same, whatever the order of keys in its bodies.
    pub fn hash(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        hex::encode(Sha256::digest(canonical_json(&value).as_bytes()))
    }
}

/// JSON with object keys sorted at every level and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                write_canonical(&map[*key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What preview found and would do. The worker journals it (with `prior_state`) before the
/// first write, takes a lease on every id of `leases`, and shows `change` in the dry run and
/// the approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The exact change.
    pub change: Change,
    /// The state undo restores (and apply compares against to detect a conflict).
    pub prior_state: Value,
    /// Normalized (lower-case) ids of the resources to lease, one change at a time each.
    pub leases: Vec<String>,
    /// The subscriptions the change touches (for the blast-radius budget).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<String>,
}

impl Preview {
    /// The change's hash (what an approval binds to).
    pub fn hash(&self) -> String {
        self.change.hash()
    }
}

/// One write as sent, and its answer's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRequest {
    /// The method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// The final status (after its long-running operation).
    pub status: u16,
}

/// What apply did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Every write sent, in order.
    pub sent: Vec<SentRequest>,
    /// What apply learned that verify and undo need (an MDE action id, a snapshot id).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
    /// Work left for later that the worker schedules through the journal (disable the old
    /// versions once the grace window ends): it calls [`super::Executor::follow_up`] with it
    /// at or after its `not_before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<super::FollowUp>,
}

/// One read-back comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was compared.
    pub what: String,
    /// What the change should have made.
    pub expected: Value,
    /// What was read back.
    pub actual: Value,
}

impl Check {
    /// Whether the read-back matches.
    pub fn passed(&self) -> bool {
        self.expected == self.actual
    }
}

/// What verify read back. A mismatch is a failure the worker reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Every comparison.
    pub checks: Vec<Check>,
}

impl Verification {
    /// Adds a comparison.
    pub fn check(mut self, what: impl Into<String>, expected: Value, actual: Value) -> Self {
        self.checks.push(Check {
            what: what.into(),
            expected,
            actual,
        });
        self
    }

    /// Whether every comparison matched.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    /// The comparisons that did not match.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed()).collect()
    }
}

/// What undo did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Undone {
    /// Every write sent.
    pub sent: Vec<SentRequest>,
    /// What could not be restored, in words (sessions revoked, a webhook's URI).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_restored: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_key_order_and_sees_every_byte_of_the_body() {
        let a = Change::new(
            "s",
            vec![PlannedRequest::new(
                Api::Arm,
                WriteMethod::Patch,
                "https://x/a?api-version=1",
                Some(json!({"b": 1, "a": {"y": [1, 2], "x": null}})),
            )],
        );
        let mut b = a.clone();
        b.requests[0].body = Some(json!({"a": {"x": null, "y": [1, 2]}, "b": 1}));
        assert_eq!(a.hash(), b.hash());
        b.requests[0].body = Some(json!({"a": {"x": null, "y": [2, 1]}, "b": 1}));
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": "é"})),
            "{\"a\":\"é\",\"b\":1}"
        );
    }
}
