//! The `/_sim` control API: state, request log, fault rules, throttling limits and tokens, for tests and the demo.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::Audience;
use crate::faults::{glob_match, FaultRule, ThrottleConfig};
use crate::http::{segments, Reply, Req};
use crate::state::Sim;

/// Serves one `/_sim/...` request (no token needed: the simulator listens on loopback only).
pub(crate) fn handle(sim: &Sim, req: &Req) -> Reply {
    let parts = segments(&req.path);
    let method = req.method.clone();
    match (method, &parts[1..]) {
        (Method::GET, ["health"]) => Reply::ok(json!({"status": "ok"})),
        (Method::GET, ["state"]) => Reply::ok(sim.lock().snapshot()),
        (Method::POST, ["reset"]) => {
            sim.reset();
            Reply::empty(StatusCode::NO_CONTENT)
        }
        (Method::GET, ["requests"]) => {
            let state = sim.lock();
            let wanted = |entry: &&Value, key: &str| {
                req.query(key).is_none_or(|want| {
                    entry.get(key).and_then(Value::as_str).is_some_and(|got| {
                        glob_match(&want.to_ascii_lowercase(), &got.to_ascii_lowercase())
                    })
                })
            };
            let since: u64 = req.query("since").and_then(|n| n.parse().ok()).unwrap_or(0);
            let entries: Vec<Value> = state
                .requests
                .iter()
                .filter(|entry| entry.get("seq").and_then(Value::as_u64).unwrap_or(0) > since)
                .filter(|entry| {
                    wanted(entry, "surface") && wanted(entry, "method") && wanted(entry, "path")
                })
                .cloned()
                .collect();
            Reply::ok(json!({"value": entries}))
        }
        (Method::DELETE, ["requests"]) => {
            sim.lock().requests.clear();
            Reply::empty(StatusCode::NO_CONTENT)
        }
        (Method::GET, ["faults"]) => Reply::ok(json!({"value": sim.lock().faults.rules})),
        (Method::POST, ["faults"]) => {
            let body = match req.json() {
                Ok(body) => body,
                Err(reply) => return reply,
            };
            let rules: Result<Vec<FaultRule>, _> = match body {
                Value::Array(_) => serde_json::from_value(body),
                other => serde_json::from_value(other).map(|rule| vec![rule]),
            };
            match rules {
                Ok(rules) => {
                    let mut state = sim.lock();
                    let ids: Vec<u64> = rules
                        .into_iter()
                        .map(|rule| state.faults.add(rule))
                        .collect();
                    Reply::json(StatusCode::CREATED, json!({"ids": ids}))
                }
                Err(error) => {
                    Reply::error(StatusCode::BAD_REQUEST, "InvalidFault", &error.to_string())
                }
            }
        }
        (Method::DELETE, ["faults"]) => {
            sim.lock().faults.rules.clear();
            Reply::empty(StatusCode::NO_CONTENT)
        }
        (Method::DELETE, ["faults", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            sim.lock().faults.rules.retain(|rule| rule.id != id);
            Reply::empty(StatusCode::NO_CONTENT)
        }
        (Method::GET, ["throttle"]) => Reply::ok(json!(sim.lock().throttle.config)),
        (Method::PUT, ["throttle"]) => {
            match req.json().map(serde_json::from_value::<ThrottleConfig>) {
                Ok(Ok(config)) => {
                    sim.lock().throttle.configure(config);
                    Reply::ok(json!(config))
                }
                Ok(Err(error)) => Reply::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidThrottle",
                    &error.to_string(),
                ),
                Err(reply) => reply,
            }
        }
        (Method::POST, ["tokens", "expire"]) => {
            sim.lock().tokens.expire_all();
            Reply::empty(StatusCode::NO_CONTENT)
        }
        (Method::POST, ["token"]) => {
            let body = req.json().unwrap_or(Value::Null);
            let requested = body.get("audience").and_then(Value::as_str).unwrap_or("");
            let Some(audience) = Audience::parse(requested) else {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidAudience",
                    &format!("unknown audience '{requested}'"),
                );
            };
            let mut state = sim.lock();
            let identity = body
                .get("identity")
                .and_then(Value::as_str)
                .and_then(|wanted| state.identity(wanted))
                .unwrap_or_else(|| state.default_identity.clone());
            let tenant = state.tenant_id.clone();
            let lifetime = body
                .get("lifetimeSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(state.token_lifetime_s);
            let (token, expires_on) = state.tokens.issue(
                audience,
                &identity.object_id,
                &identity.client_id,
                &tenant,
                lifetime,
            );
            Reply::ok(
                json!({"access_token": token, "expires_on": expires_on, "token_type": "Bearer"}),
            )
        }
        _ => Reply::error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no control route {} {}", req.method, req.path),
        ),
    }
}
