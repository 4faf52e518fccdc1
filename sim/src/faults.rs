//! Fault injection per route (status codes, delays, slow or failing LROs, token expiry) and ARM's token-bucket throttling.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One fault rule: which requests it hits, how often, and what happens to them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern, case-insensitive; `*` matches any run of characters (including `/`).
    pub path: String,
    /// Matching requests to let through before the fault starts.
    #[serde(default)]
    pub after: u32,
    /// How many matching requests the fault hits (forever when absent).
    #[serde(default)]
    pub times: Option<u32>,
    /// What happens.
    pub fault: Fault,
}

/// What a fault does to a request it hits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Fault {
    /// Answer with this status and the API family's error body (429/409/500/503…).
    #[serde(rename_all = "camelCase")]
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After` seconds to send (429 and 503 default to 1).
        #[serde(default)]
        retry_after: Option<u32>,
        /// The error code (a realistic default per status when absent).
        #[serde(default)]
        code: Option<String>,
        /// The error message (a default per status when absent).
        #[serde(default)]
        message: Option<String>,
    },
    /// Hold the request this long, then serve it normally.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// The long-running operation the request starts stays `InProgress` for this many polls.
    LroSlow {
        /// Polls answered `InProgress` before `Succeeded`.
        polls: u32,
    },
    /// The long-running operation the request starts ends `Failed` after this many polls.
    #[serde(rename_all = "camelCase")]
    LroFail {
        /// Polls answered `InProgress` before `Failed`.
        #[serde(default)]
        polls: u32,
        /// The operation's error code.
        #[serde(default)]
        code: Option<String>,
        /// The operation's error message.
        #[serde(default)]
        message: Option<String>,
    },
    /// Every token issued so far expires when this request arrives (it is refused with the API's 401).
    ExpireTokens,
}

/// A rule as stored: with its id and how many requests it has seen.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActiveRule {
    pub(crate) id: u64,
    #[serde(flatten)]
    pub(crate) rule: FaultRule,
    pub(crate) seen: u32,
    pub(crate) hits: u32,
}

/// The fault rules of one simulator.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    pub(crate) rules: Vec<ActiveRule>,
    next_id: u64,
}

impl FaultBook {
    /// Adds a rule, returning its id.
    pub(crate) fn add(&mut self, rule: FaultRule) -> u64 {
        self.next_id += 1;
        self.rules.push(ActiveRule {
            id: self.next_id,
            rule,
            seen: 0,
            hits: 0,
        });
        self.next_id
    }

    /// The faults hitting this request (counting it against every matching rule).
    pub(crate) fn hit(&mut self, method: &str, path: &str) -> Vec<Fault> {
        let mut hits = Vec::new();
        for active in &mut self.rules {
            let rule = &active.rule;
            if rule
                .method
                .as_deref()
                .is_some_and(|wanted| !wanted.eq_ignore_ascii_case(method))
            {
                continue;
            }
            if !glob_match(&rule.path.to_ascii_lowercase(), &path.to_ascii_lowercase()) {
                continue;
            }
            active.seen += 1;
            if active.seen <= rule.after {
                continue;
            }
            if rule.times.is_some_and(|times| active.hits >= times) {
                continue;
            }
            active.hits += 1;
            hits.push(rule.fault.clone());
        }
        hits
    }
}

/// `*` matches any run of characters; everything else literally.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (index, part) in parts.iter().enumerate() {
        if index == 0 {
            let Some(after) = rest.strip_prefix(part) else {
                return false;
            };
            rest = after;
        } else if index == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(found) = rest.find(part) {
            rest = &rest[found + part.len()..];
        } else {
            return false;
        }
    }
    true
}

/// One bucket's size and refill rate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleLimit {
    /// Bucket size (requests).
    pub capacity: u32,
    /// Tokens added back per second.
    pub refill_per_second: f64,
}

/// ARM's request buckets per subscription × caller (Learn: "Understand how Azure Resource Manager throttles requests").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleConfig {
    /// GET/HEAD: 250, refilled 25/s.
    pub reads: ThrottleLimit,
    /// PUT/PATCH/POST: 200, refilled 10/s.
    pub writes: ThrottleLimit,
    /// DELETE: 200, refilled 10/s.
    pub deletes: ThrottleLimit,
    /// Defender for Endpoint machine actions per caller: 100 a minute.
    #[serde(default = "mde_actions_default")]
    pub mde_actions: ThrottleLimit,
}

fn mde_actions_default() -> ThrottleLimit {
    ThrottleLimit {
        capacity: 100,
        refill_per_second: 100.0 / 60.0,
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            reads: ThrottleLimit {
                capacity: 250,
                refill_per_second: 25.0,
            },
            writes: ThrottleLimit {
                capacity: 200,
                refill_per_second: 10.0,
            },
            deletes: ThrottleLimit {
                capacity: 200,
                refill_per_second: 10.0,
            },
            mde_actions: mde_actions_default(),
        }
    }
}

/// Which ARM bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RequestKind {
    Reads,
    Writes,
    Deletes,
    /// Defender for Endpoint machine actions (isolate, scan…).
    MdeActions,
}

impl RequestKind {
    /// The bucket of an HTTP method.
    pub(crate) fn of(method: &str) -> RequestKind {
        match method {
            "GET" | "HEAD" => RequestKind::Reads,
            "DELETE" => RequestKind::Deletes,
            _ => RequestKind::Writes,
        }
    }

    /// `reads` / `writes` / `deletes` as in the `x-ms-ratelimit-remaining-subscription-*` headers.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RequestKind::Reads => "reads",
            RequestKind::Writes => "writes",
            RequestKind::Deletes => "deletes",
            RequestKind::MdeActions => "machine actions",
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Every bucket, by subscription, caller and kind.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    pub(crate) config: ThrottleConfig,
    buckets: HashMap<(String, String, RequestKind), Bucket>,
}

/// The outcome of drawing from a bucket.
pub(crate) enum Draw {
    /// Allowed, with what remains.
    Allowed(u32),
    /// Refused: retry after this many seconds.
    Throttled(u32),
}

impl Throttle {
    /// Takes one token from the caller's bucket for this subscription and kind.
    pub(crate) fn draw(&mut self, subscription: &str, caller: &str, kind: RequestKind) -> Draw {
        let limit = match kind {
            RequestKind::Reads => self.config.reads,
            RequestKind::Writes => self.config.writes,
            RequestKind::Deletes => self.config.deletes,
            RequestKind::MdeActions => self.config.mde_actions,
        };
        let now = Instant::now();
        let bucket = self
            .buckets
            .entry((subscription.to_ascii_lowercase(), caller.to_string(), kind))
            .or_insert(Bucket {
                tokens: f64::from(limit.capacity),
                refilled: now,
            });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * limit.refill_per_second).min(f64::from(limit.capacity));
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Draw::Allowed(bucket.tokens.floor() as u32)
        } else {
            let wait = if limit.refill_per_second > 0.0 {
                ((1.0 - bucket.tokens) / limit.refill_per_second).ceil() as u32
            } else {
                60
            };
            Draw::Throttled(wait.max(1))
        }
    }

    /// Replaces the limits and empties every bucket's history.
    pub(crate) fn configure(&mut self, config: ThrottleConfig) {
        self.config = config;
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_segments_and_prefixes() {
        assert!(glob_match("*/networksecuritygroups/*", "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/networksecuritygroups/n"));
        assert!(glob_match("/secrets/*", "/secrets/a/b"));
        assert!(!glob_match("/secrets/*", "/keys/a"));
        assert!(glob_match("/v1.0/users/u1", "/v1.0/users/u1"));
        assert!(!glob_match("*/restart", "/x/restart/y"));
    }

    #[test]
    fn a_rule_skips_then_hits_a_bounded_number_of_times() {
        let mut book = FaultBook::default();
        book.add(FaultRule {
            method: Some("PUT".into()),
            path: "/a/*".into(),
            after: 1,
            times: Some(2),
            fault: Fault::Delay { ms: 1 },
        });
        let hits: Vec<usize> = (0..5).map(|_| book.hit("PUT", "/a/b").len()).collect();
        assert_eq!(hits, vec![0, 1, 1, 0, 0]);
        assert!(book.hit("GET", "/a/b").is_empty());
    }

    #[test]
    fn the_bucket_empties_then_names_a_wait() {
        let mut throttle = Throttle::default();
        throttle.configure(ThrottleConfig {
            writes: ThrottleLimit {
                capacity: 2,
                refill_per_second: 0.5,
            },
            ..ThrottleConfig::default()
        });
        assert!(matches!(
            throttle.draw("s", "me", RequestKind::Writes),
            Draw::Allowed(1)
        ));
        assert!(matches!(
            throttle.draw("s", "me", RequestKind::Writes),
            Draw::Allowed(0)
        ));
        assert!(matches!(
            throttle.draw("s", "me", RequestKind::Writes),
            Draw::Throttled(2)
        ));
        assert!(matches!(
            throttle.draw("s", "other", RequestKind::Writes),
            Draw::Allowed(1)
        ));
        assert!(matches!(
            throttle.draw("s", "me", RequestKind::Reads),
            Draw::Allowed(249)
        ));
    }
}
