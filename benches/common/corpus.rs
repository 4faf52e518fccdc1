//! Generates distinct, realistic alerts of 2–15 KB from the fixture shapes, as request templates.
//!
//! Every alert id in a template is a fixed-width marker (`B3NCH<slot:2><counter:11>`) that the
//! load generator overwrites per request, so each request carries a unique systemAlertId and
//! event id without rebuilding the body (a repeated id would be a redelivery: a duplicate).

use std::path::{Path, PathBuf};

use defender_responder::adapters::MemoryLedger;
use defender_responder::config::Config;
use defender_responder::decode::{decode_body, EventKind};
use defender_responder::domain::ServiceName;
use defender_responder::pipeline::{Outcome, Pipeline};
use defender_responder::services::{Fallback, KeyVault, Registry};
use serde_json::{json, Map, Value};

/// The marker's prefix; 2 slot digits and 11 counter digits follow.
pub(crate) const MARKER: &str = "B3NCH";
/// Marker length: prefix, slot, counter.
pub(crate) const MARKER_LEN: usize = 5 + 2 + 11;

/// One event of the corpus: an Event Grid or CloudEvents event object with markers for its ids.
#[derive(Clone, Debug)]
pub(crate) struct AlertEvent {
    /// The event, with marker slot 00.
    pub(crate) event: Value,
    /// Serialized size of the event in bytes.
    pub(crate) bytes: usize,
    /// The alert type it carries.
    pub(crate) alert_type: String,
    /// The fixture it was made from.
    pub(crate) fixture: String,
}

/// The fixture folder.
pub(crate) fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alerts")
}

/// A default policy and registry pipeline (what `serve` runs with no settings).
pub(crate) fn pipeline() -> Pipeline {
    let config = Config::from_lookup(|_| None).expect("default configuration");
    Pipeline::new(Registry::standard(), config.policy)
}

/// The fixture events that plan a response (single alert events, not malformed ones).
pub(crate) fn templates() -> Vec<(String, Value, ServiceName, String)> {
    let pipeline = pipeline();
    let mut found = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .filter(|path| !path.ends_with("EXPECTED.json"))
        .collect();
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        if name.contains("batch") || name.contains("huge") || name.contains("dupdelivery2") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("fixture readable");
        let Ok(events) = decode_body(&bytes) else {
            continue;
        };
        let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let raw = match value {
            Value::Array(mut items) if items.len() == 1 => items.remove(0),
            Value::Object(_) => value,
            _ => continue,
        };
        let [event] = events.as_slice() else {
            continue;
        };
        let EventKind::Alert(decoded) = &event.kind else {
            continue;
        };
        let report = pipeline
            .assess(event, &MemoryLedger::default())
            .expect("assess");
        if report.outcome != Outcome::Planned || !decoded.warnings.is_empty() {
            continue;
        }
        let service = Registry::standard().route(&decoded.alert).service;
        if service == Fallback::NAME {
            continue;
        }
        found.push((name, raw, service, decoded.alert.system_alert_id.clone()));
    }
    found
}

/// Case-insensitive mutable lookup in a JSON object.
fn get_mut<'a>(object: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Value> {
    let name = object
        .keys()
        .find(|name| name.eq_ignore_ascii_case(key))?
        .clone();
    object.get_mut(&name)
}

/// The alert object inside an event: `data.properties` (REST) or `data` (flat).
fn alert_fields(event: &mut Value) -> &mut Map<String, Value> {
    let data = event
        .as_object_mut()
        .and_then(|object| get_mut(object, "data"))
        .and_then(Value::as_object_mut)
        .expect("event data object");
    let rest = data
        .keys()
        .any(|name| name.eq_ignore_ascii_case("properties"));
    if rest {
        get_mut(data, "properties")
            .and_then(Value::as_object_mut)
            .expect("properties object")
    } else {
        data
    }
}

/// `count` distinct alerts: every catalogue type of each fixture's service in turn, sizes spread
/// evenly over 2–15 KB by trimming entities or padding `extendedProperties`.
pub(crate) fn generate(count: usize) -> Vec<AlertEvent> {
    let templates = templates();
    assert!(!templates.is_empty(), "no plannable fixtures found");
    let marker = format!("{MARKER}00{:011}", 0);
    let mut out = Vec::with_capacity(count);
    let registry = Registry::standard();
    for index in 0..count {
        let (name, raw, service, system_alert_id) = &templates[index % templates.len()];
        let types: Vec<&str> = registry
            .catalog()
            .filter(|entry| entry.service == *service)
            .map(|entry| entry.alert_type)
            .collect();
        let alert_type = types[(index / templates.len() + index) % types.len()];
        // Ids: every occurrence of the fixture's systemAlertId (name, id path, subject) too.
        let text = raw.to_string().replace(system_alert_id.as_str(), &marker);
        let mut event: Value = serde_json::from_str(&text).expect("template JSON");
        let object = event.as_object_mut().expect("event object");
        object.insert("id".into(), Value::String(marker.clone()));
        {
            let fields = alert_fields(&mut event);
            let key = fields
                .keys()
                .find(|name| name.eq_ignore_ascii_case("alertType"))
                .expect("alertType")
                .clone();
            fields.insert(key, Value::String(alert_type.to_string()));
        }
        // Target size: 2 KB .. 15 KB, spread evenly (mean about 8.5 KB).
        let target = 2048 + (index * 7919 % 14) * 1024 + (index * 131 % 1000);
        fit(&mut event, target);
        let bytes = event.to_string().len();
        out.push(AlertEvent {
            event,
            bytes,
            alert_type: alert_type.to_string(),
            fixture: name.clone(),
        });
    }
    out
}

/// Up to `count` distinct Key Vault alerts of about `bytes` bytes (Event Grid REST shape) that
/// each plan exactly `tasks` tasks: the shape the full-path target is stated for.
pub(crate) fn key_vault(count: usize, bytes: usize, tasks: usize) -> Vec<AlertEvent> {
    let pipeline = pipeline();
    let registry = Registry::standard();
    let marker = format!("{MARKER}00{:011}", 0);
    let mut out = Vec::new();
    for (name, raw, service, system_alert_id) in templates() {
        if service != KeyVault::NAME || !name.ends_with("-egrest.json") {
            continue;
        }
        for entry in registry.catalog().filter(|entry| entry.service == service) {
            if out.len() >= count {
                return out;
            }
            let text = raw.to_string().replace(system_alert_id.as_str(), &marker);
            let mut event: Value = serde_json::from_str(&text).expect("template JSON");
            event
                .as_object_mut()
                .expect("event object")
                .insert("id".into(), Value::String(marker.clone()));
            alert_fields(&mut event).insert(
                "alertType".into(),
                Value::String(entry.alert_type.to_string()),
            );
            fit(&mut event, bytes);
            let decoded = defender_responder::decode::decode_event(&event, 0);
            let report = pipeline
                .assess(&decoded, &MemoryLedger::default())
                .expect("assess");
            if report.outcome != Outcome::Planned || report.tasks.len() != tasks {
                continue;
            }
            let size = event.to_string().len();
            out.push(AlertEvent {
                event,
                bytes: size,
                alert_type: entry.alert_type.to_string(),
                fixture: name.clone(),
            });
        }
    }
    out
}

/// Trims optional bulk (entities past the first two, remediation text) or pads
/// `extendedProperties` until the event is close to `target` bytes.
fn fit(event: &mut Value, target: usize) {
    let mut size = event.to_string().len();
    if size > target {
        let fields = alert_fields(event);
        for key in ["remediationSteps", "extendedLinks", "supportingEvidence"] {
            if let Some(name) = fields.keys().find(|n| n.eq_ignore_ascii_case(key)).cloned() {
                fields.remove(&name);
            }
        }
        if let Some(Value::Array(entities)) = get_mut(fields, "entities") {
            while entities.len() > 2 {
                entities.pop();
            }
        }
        size = event.to_string().len();
    }
    if size + 40 < target {
        let fields = alert_fields(event);
        let key = fields
            .keys()
            .find(|name| name.eq_ignore_ascii_case("extendedProperties"))
            .cloned()
            .unwrap_or_else(|| "extendedProperties".to_string());
        let extended = fields.entry(key).or_insert_with(|| json!({}));
        if let Value::Object(extended) = extended {
            let pad = target - size - 40;
            // Realistic filler: what Defender puts there (operation lists, resource names).
            let unit = "Microsoft.KeyVault/vaults/secrets/read; ";
            let text: String = unit.repeat(pad / unit.len() + 1)[..pad].to_string();
            extended.insert("Suspicious Operations Detail".into(), Value::String(text));
        }
    }
}

/// Puts `slot` into every marker of a serialized event (for events of a batch).
pub(crate) fn with_slot(text: &str, slot: usize) -> String {
    text.replace(&format!("{MARKER}00"), &format!("{MARKER}{slot:02}"))
}
