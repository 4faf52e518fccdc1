//! Case-insensitive access to JSON objects, and readable descriptions of JSON values for errors.

use serde_json::{Map, Value};

/// Looks a key up exactly, then case-insensitively; `null` counts as absent.
pub(crate) fn get<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let found = match object.get(key) {
        Some(value) => Some(value),
        None => object
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value),
    };
    found.filter(|value| !value.is_null())
}

/// The first of several keys present.
pub(crate) fn get_any<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|key| get(object, key))
}

/// A string value, trimmed and non-empty.
pub(crate) fn get_str<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    get(object, key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// Describes a value's kind for an error message ("number 2", "an object", ...).
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => format!("boolean {flag}"),
        Value::Number(number) => format!("number {number}"),
        Value::String(text) if text.chars().count() > 40 => "a long string".to_string(),
        Value::String(text) => format!("string {text:?}"),
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::Object(_) => "an object".to_string(),
    }
}

/// A value as text: strings as they are, everything else as compact JSON.
pub(crate) fn to_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
