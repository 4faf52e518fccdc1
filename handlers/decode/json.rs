//! Case-insensitive access to JSON objects, and readable descriptions of JSON values for errors.

use super::tree::{JsonObject, JsonTree};

/// Looks a key up exactly, then case-insensitively; `null` counts as absent.
pub(crate) fn get<'o, 'a>(object: &'o JsonObject<'a>, key: &str) -> Option<&'o JsonTree<'a>> {
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
pub(crate) fn get_any<'o, 'a>(
    object: &'o JsonObject<'a>,
    keys: &[&str],
) -> Option<&'o JsonTree<'a>> {
    keys.iter().find_map(|key| get(object, key))
}

/// A string value, trimmed and non-empty.
pub(crate) fn get_str<'o>(object: &'o JsonObject<'_>, key: &str) -> Option<&'o str> {
    get(object, key)
        .and_then(JsonTree::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// Describes a value's kind for an error message ("number 2", "an object", ...).
pub(crate) fn describe(value: &JsonTree<'_>) -> String {
    match value {
        JsonTree::Null => "null".to_string(),
        JsonTree::Bool(flag) => format!("boolean {flag}"),
        JsonTree::Number(number) => format!("number {number}"),
        JsonTree::String(text) if text.chars().count() > 40 => "a long string".to_string(),
        JsonTree::String(text) => format!("string {:?}", text.as_ref()),
        JsonTree::Array(items) => format!("an array of {} items", items.len()),
        JsonTree::Object(_) => "an object".to_string(),
    }
}

/// A value as text: strings as they are, everything else as compact JSON.
pub(crate) fn to_text(value: &JsonTree<'_>) -> String {
    match value {
        JsonTree::String(text) => text.to_string(),
        other => other.to_string(),
    }
}
