//! A JSON tree that borrows its strings from the input, so the decoder reads an event in place
//! instead of building (and then dropping) a `serde_json::Value` of owned strings per event.
//!
//! Objects behave as `serde_json::Map` does (this crate builds it as a `BTreeMap`): keys are
//! kept sorted, a repeated key keeps its last value, and iteration is in key order. The
//! decoder's case-insensitive lookups, warnings and entity references therefore see exactly
//! what they saw when the event was a `Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Number, Value};

/// One JSON value; strings borrow from the text it was parsed from when they hold no escapes.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTree<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(Number),
    /// A string.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<JsonTree<'a>>),
    /// An object.
    Object(JsonObject<'a>),
}

/// A JSON object: entries sorted by key, each key once (its last value), like `serde_json::Map`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonObject<'a> {
    entries: Vec<(Cow<'a, str>, JsonTree<'a>)>,
}

impl<'a> JsonTree<'a> {
    /// Parses JSON text, borrowing its unescaped strings. Errors are `serde_json`'s, as parsing
    /// into a `Value` reports them.
    pub fn parse(text: &'a str) -> Result<JsonTree<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Parses JSON bytes, borrowing their unescaped strings (see [`JsonTree::parse`]).
    pub fn parse_slice(bytes: &'a [u8]) -> Result<JsonTree<'a>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A view of a `Value` (its strings borrowed).
    pub fn from_value(value: &'a Value) -> JsonTree<'a> {
        match value {
            Value::Null => JsonTree::Null,
            Value::Bool(flag) => JsonTree::Bool(*flag),
            Value::Number(number) => JsonTree::Number(number.clone()),
            Value::String(text) => JsonTree::String(Cow::Borrowed(text)),
            Value::Array(items) => {
                JsonTree::Array(items.iter().map(JsonTree::from_value).collect())
            }
            // A `Map` is already sorted and has each key once.
            Value::Object(map) => JsonTree::Object(JsonObject {
                entries: map
                    .iter()
                    .map(|(key, value)| (Cow::Borrowed(key.as_str()), JsonTree::from_value(value)))
                    .collect(),
            }),
        }
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, JsonTree::Null)
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsonTree::String(text) => Some(text),
            _ => None,
        }
    }

    /// The object, if it is one.
    pub fn as_object(&self) -> Option<&JsonObject<'a>> {
        match self {
            JsonTree::Object(object) => Some(object),
            _ => None,
        }
    }
}

impl<'a> JsonObject<'a> {
    /// The value of exactly this key.
    pub fn get(&self, key: &str) -> Option<&JsonTree<'a>> {
        self.entries
            .binary_search_by(|(name, _)| name.as_ref().cmp(key))
            .ok()
            .map(|index| &self.entries[index].1)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &JsonTree<'a>)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_ref(), value))
    }

    /// The values in key order.
    pub fn values(&self) -> impl Iterator<Item = &JsonTree<'a>> {
        self.entries.iter().map(|(_, value)| value)
    }

    /// How many keys it has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts the entries by key and keeps the last value of a repeated key, as inserting them
    /// one by one into a `BTreeMap` would.
    fn from_entries(mut entries: Vec<(Cow<'a, str>, JsonTree<'a>)>) -> Self {
        if entries.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            // Stable: equal keys keep their order, so the last of each run is the last sent.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut unique: Vec<(Cow<'a, str>, JsonTree<'a>)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match unique.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => unique.push(entry),
                }
            }
            entries = unique;
        }
        JsonObject { entries }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonTree<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = JsonTree<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(JsonTree::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(JsonTree::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(JsonTree::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        // As `Value` does: JSON text has no NaN or infinity, so this is always a number.
        Ok(Number::from_f64(value).map_or(JsonTree::Null, JsonTree::Number))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(JsonTree::String(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(JsonTree::String(Cow::Owned(value.to_string())))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(JsonTree::String(Cow::Owned(value)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(JsonTree::Null)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonTree::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonTree::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            entries.push((key.0, map.next_value()?));
        }
        Ok(JsonTree::Object(JsonObject::from_entries(entries)))
    }
}

/// An object key, borrowed when it holds no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(value)))
            }
            fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(value.to_string())))
            }
            fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Serialises as the `Value` it stands for would (objects in key order).
impl Serialize for JsonTree<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonTree::Null => serializer.serialize_unit(),
            JsonTree::Bool(flag) => serializer.serialize_bool(*flag),
            JsonTree::Number(number) => number.serialize(serializer),
            JsonTree::String(text) => serializer.serialize_str(text),
            JsonTree::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            JsonTree::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for (key, value) in object.iter() {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl fmt::Display for JsonTree<'_> {
    /// Compact JSON, as `Value`'s `Display` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_read_like_a_serde_json_map_and_print_like_a_value() {
        let text = r#"{"b": 1, "a": [true, null, 2.5, -3], "b": "two", "c\u0041": {"z": 1, "y": {}}, "": "e"}"#;
        let tree = JsonTree::parse(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(tree.to_string(), value.to_string());
        assert_eq!(tree, JsonTree::from_value(&value));
        let object = tree.as_object().unwrap();
        assert_eq!(object.get("b").and_then(JsonTree::as_str), Some("two"));
        assert_eq!(object.len(), 4);
        let keys: Vec<&str> = object.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["", "a", "b", "cA"]);
        assert!(object.get("x").is_none());
    }

    #[test]
    fn parse_errors_are_serde_json_errors_with_their_position() {
        let mine = JsonTree::parse("[{'id': 1}]").unwrap_err().to_string();
        let theirs = serde_json::from_str::<Value>("[{'id': 1}]")
            .unwrap_err()
            .to_string();
        assert_eq!(mine, theirs);
        let mine = JsonTree::parse("{} {}").unwrap_err().to_string();
        let theirs = serde_json::from_str::<Value>("{} {}")
            .unwrap_err()
            .to_string();
        assert_eq!(mine, theirs);
    }
}
