//! Limits and timeouts that keep one client or one alert from hurting the others: the HTTP
//! server's read timeouts, idle timeout and connection cap, the duplicate wait, and the
//! embedded queues' delivery limit. Each is an app setting; docs/limits.md says why.

use std::time::Duration;

use super::Setting;
use crate::error::Error;

/// Seconds a client may take from the first byte of a request to the end of its header.
pub const HTTP_HEADER_TIMEOUT: &str = "RESPONDER_HTTP_HEADER_TIMEOUT_SECONDS";
/// Seconds a client may take from the end of a request header to the end of its body.
pub const HTTP_BODY_TIMEOUT: &str = "RESPONDER_HTTP_BODY_TIMEOUT_SECONDS";
/// Seconds a kept-alive connection may stay open without a request.
pub const HTTP_IDLE_TIMEOUT: &str = "RESPONDER_HTTP_IDLE_TIMEOUT_SECONDS";
/// Connections served at once; further ones wait in the listen backlog.
pub const HTTP_MAX_CONNECTIONS: &str = "RESPONDER_HTTP_MAX_CONNECTIONS";
/// Seconds a copy of an alert waits for another delivery of the same alert to finish.
pub const DUPLICATE_WAIT: &str = "RESPONDER_DUPLICATE_WAIT_SECONDS";
/// Deliveries of one embedded-queue message before it is dead-lettered.
pub const QUEUE_MAX_DELIVERY_COUNT: &str = "RESPONDER_QUEUE_MAX_DELIVERY_COUNT";

/// The limit settings, for documentation and the drift tests.
pub const LIMIT_SETTINGS: &[Setting] = &[
    Setting { name: HTTP_HEADER_TIMEOUT, default: "10", description: "Seconds from the first byte of a request to the end of its header; a slower client is disconnected." },
    Setting { name: HTTP_BODY_TIMEOUT, default: "30", description: "Seconds from the end of a request header to the end of its body; a slower body is answered 408 and the connection closed." },
    Setting { name: HTTP_IDLE_TIMEOUT, default: "120", description: "Seconds a kept-alive connection may wait for its next request before it is closed." },
    Setting { name: HTTP_MAX_CONNECTIONS, default: "512", description: "Connections served at once (keep it below the process's file-descriptor limit); more wait in the listen backlog until one closes." },
    Setting { name: DUPLICATE_WAIT, default: "20", description: "Seconds a copy of an alert waits while another delivery of the same alert is publishing; past it the copy is answered retryable (503)." },
    Setting { name: QUEUE_MAX_DELIVERY_COUNT, default: "10", description: "Embedded queues: a message delivered this many times and abandoned (or its lock expired) is dead-lettered." },
];

/// The validated limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// See [`HTTP_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`HTTP_BODY_TIMEOUT`].
    pub body_timeout: Duration,
    /// See [`HTTP_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`HTTP_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DUPLICATE_WAIT`].
    pub duplicate_wait: Duration,
    /// See [`QUEUE_MAX_DELIVERY_COUNT`].
    pub max_delivery_count: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 512,
            duplicate_wait: Duration::from_secs(20),
            max_delivery_count: 10,
        }
    }
}

impl Limits {
    /// Reads the limits through `get` (trimmed, empty treated as unset).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let defaults = Limits::default();
        Ok(Limits {
            header_timeout: seconds(get, HTTP_HEADER_TIMEOUT, defaults.header_timeout)?,
            body_timeout: seconds(get, HTTP_BODY_TIMEOUT, defaults.body_timeout)?,
            idle_timeout: seconds(get, HTTP_IDLE_TIMEOUT, defaults.idle_timeout)?,
            max_connections: count(
                get,
                HTTP_MAX_CONNECTIONS,
                defaults.max_connections,
                1_000_000,
            )?,
            duplicate_wait: seconds(get, DUPLICATE_WAIT, defaults.duplicate_wait)?,
            max_delivery_count: count(
                get,
                QUEUE_MAX_DELIVERY_COUNT,
                defaults.max_delivery_count as usize,
                10_000,
            )? as u32,
        })
    }
}

/// A positive number of seconds (fractions allowed, up to a day).
fn seconds(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: Duration,
) -> Result<Duration, Error> {
    let Some(text) = get(name) else {
        return Ok(default);
    };
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 86_400.0 => Ok(Duration::from_secs_f64(value)),
        _ => Err(Error::Config(format!(
            "{name}={text:?} is not a number of seconds above 0 and at most 86400"
        ))),
    }
}

/// A whole number from 1 to `max`.
fn count(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, Error> {
    let Some(text) = get(name) else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(value) if (1..=max).contains(&value) => Ok(value),
        _ => Err(Error::Config(format!(
            "{name}={text:?} is not a whole number from 1 to {max}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn limits(pairs: &[(&str, &str)]) -> Result<Limits, Error> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        Limits::from_lookup(&|name| map.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn defaults_apply_and_match_the_documented_ones() {
        let got = limits(&[]).unwrap();
        assert_eq!(got, Limits::default());
        for setting in LIMIT_SETTINGS {
            let text = setting.default.to_string();
            let parsed = limits(&[(setting.name, &text)]).unwrap();
            assert_eq!(parsed, Limits::default(), "{}", setting.name);
        }
    }

    #[test]
    fn values_parse_and_bad_ones_name_the_setting() {
        let got = limits(&[(HTTP_HEADER_TIMEOUT, "0.5"), (HTTP_MAX_CONNECTIONS, "64")]).unwrap();
        assert_eq!(got.header_timeout, Duration::from_millis(500));
        assert_eq!(got.max_connections, 64);
        for (name, value) in [
            (HTTP_BODY_TIMEOUT, "0"),
            (HTTP_IDLE_TIMEOUT, "soon"),
            (HTTP_MAX_CONNECTIONS, "0"),
            (QUEUE_MAX_DELIVERY_COUNT, "-1"),
            (DUPLICATE_WAIT, "1e9"),
        ] {
            let err = limits(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(&format!("{name}={value:?}")), "{err}");
        }
    }
}
