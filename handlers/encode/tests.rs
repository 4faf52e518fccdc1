//! The encoder against serde_json: the same bytes for strings of every escape at every offset, and for every shape serde's derive produces.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{to_string, write_str};

fn same_as_serde_json<T: Serialize + ?Sized>(value: &T) {
    let expected = serde_json::to_string(value).expect("serde_json writes it");
    let written = to_string(value).expect("the encoder writes it");
    assert_eq!(written, expected);
}

#[test]
fn every_ascii_byte_at_every_offset_of_a_word_is_escaped_as_serde_json_escapes_it() {
    for byte in 0u8..0x80 {
        for at in 0..19 {
            let mut text: Vec<char> = "abcdefghijklmnopqrs".chars().collect();
            text[at] = char::from(byte);
            let text: String = text.into_iter().collect();
            same_as_serde_json(&text);
        }
    }
}

#[test]
fn mixed_strings_of_every_length_match_serde_json() {
    const ALPHABET: &[char] = &[
        'a', 'Z', ' ', '/', '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{8}', '\u{c}', '\u{1f}',
        '\u{7f}', 'é', '€', '😀', '\u{2028}',
    ];
    // A fixed xorshift sequence: the same strings on every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 40) as usize;
        let text: String = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        same_as_serde_json(&text);
    }
}

#[test]
fn a_string_is_appended_in_quotes() {
    let mut out = String::from("x=");
    write_str(&mut out, "a\"b\\c\u{1}d");
    assert_eq!(out, r#"x="a\"b\\c\u0001d""#);
}

#[derive(Serialize)]
enum Variants {
    Unit,
    Newtype(u8),
    Tuple(i32, String),
    Struct { name: String, flag: bool },
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Tagged {
    Vault { id: String },
    Nothing,
}

#[derive(Serialize)]
#[serde(tag = "action", content = "parameters", rename_all = "snake_case")]
enum Adjacent {
    Rotate { secret: String },
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Pair(u16, Option<String>);

#[derive(Serialize)]
struct Name(String);

struct Bytes(&'static [u8]);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

#[derive(Serialize)]
struct Inner {
    steps: Vec<String>,
    empty: Vec<u8>,
}

#[derive(Serialize)]
struct Everything {
    text: String,
    yes: bool,
    small: i8,
    negative: i64,
    big: u64,
    huge: i128,
    vast: u128,
    ratio: f64,
    tiny: f32,
    not_a_number: f64,
    infinite: f32,
    letter: char,
    quote: char,
    nothing: Option<String>,
    something: Option<Name>,
    unit: (),
    unit_struct: Unit,
    pair: Pair,
    tuple: (u8, &'static str, bool),
    variants: Vec<Variants>,
    tagged: Vec<Tagged>,
    adjacent: Adjacent,
    #[serde(flatten)]
    inner: Inner,
    #[serde(flatten)]
    flat_tagged: Tagged,
    bytes: Bytes,
    no_bytes: Bytes,
    facts: BTreeMap<String, String>,
    numbered: BTreeMap<i32, &'static str>,
    unsigned_keys: BTreeMap<u64, u8>,
    boolean_keys: BTreeMap<bool, u8>,
    char_keys: BTreeMap<char, u8>,
    name_keys: BTreeMap<String, Vec<Option<bool>>>,
    empty_map: BTreeMap<String, String>,
    value: Value,
    raw: Box<RawValue>,
}

#[test]
fn every_shape_of_serde_derive_matches_serde_json() {
    let everything = Everything {
        text: "Key Vault \"kv-prod\"\n".into(),
        yes: true,
        small: -128,
        negative: i64::MIN,
        big: u64::MAX,
        huge: i128::MIN,
        vast: u128::MAX,
        ratio: 0.1 + 0.2,
        tiny: 1.5e-7,
        not_a_number: f64::NAN,
        infinite: f32::INFINITY,
        letter: 'é',
        quote: '"',
        nothing: None,
        something: Some(Name("n".into())),
        unit: (),
        unit_struct: Unit,
        pair: Pair(7, None),
        tuple: (1, "two", false),
        variants: vec![
            Variants::Unit,
            Variants::Newtype(3),
            Variants::Tuple(-1, "t".into()),
            Variants::Struct {
                name: "s".into(),
                flag: false,
            },
        ],
        tagged: vec![
            Tagged::Vault {
                id: "/subscriptions/x".into(),
            },
            Tagged::Nothing,
        ],
        adjacent: Adjacent::Rotate {
            secret: "https://kv.vault.azure.net/secrets/a".into(),
        },
        inner: Inner {
            steps: vec!["KV-1".into(), "KV-2a".into()],
            empty: Vec::new(),
        },
        flat_tagged: Tagged::Vault { id: "v".into() },
        bytes: Bytes(&[0, 1, 255]),
        no_bytes: Bytes(&[]),
        facts: [
            ("caller".to_string(), "a@b".to_string()),
            ("\"q\"".into(), "\t".into()),
        ]
        .into_iter()
        .collect(),
        numbered: [(-3, "minus"), (0, "zero"), (12, "twelve")]
            .into_iter()
            .collect(),
        unsigned_keys: [(u64::MAX, 1)].into_iter().collect(),
        boolean_keys: [(true, 1), (false, 0)].into_iter().collect(),
        char_keys: [('a', 1), ('\n', 2)].into_iter().collect(),
        name_keys: [("k".to_string(), vec![None, Some(true)])]
            .into_iter()
            .collect(),
        empty_map: BTreeMap::new(),
        value: json!({"a": [1, -2.5, null, true, "x\u{0}"], "b": {}, "c": []}),
        raw: RawValue::from_string(r#"{"raw" : [1, 2]}"#.into()).expect("raw JSON"),
    };
    same_as_serde_json(&everything);
}

#[test]
fn a_key_that_is_not_a_string_number_or_boolean_is_refused_by_name() {
    let by_list: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into_iter().collect();
    let by_option: BTreeMap<Option<u8>, u8> = [(None, 1)].into_iter().collect();
    let by_unit: BTreeMap<(), u8> = [((), 1)].into_iter().collect();
    let by_nan: BTreeMap<String, BTreeMap<Key, u8>> = [(
        "outer".to_string(),
        [(Key(f64::NAN), 1)].into_iter().collect(),
    )]
    .into_iter()
    .collect();
    for error in [
        to_string(&by_list).unwrap_err(),
        to_string(&by_option).unwrap_err(),
        to_string(&by_unit).unwrap_err(),
        to_string(&by_nan).unwrap_err(),
    ] {
        assert_eq!(error.to_string(), "key must be a string");
    }
    assert!(serde_json::to_string(&by_list).is_err());
    assert!(serde_json::to_string(&by_option).is_err());
    assert!(serde_json::to_string(&by_nan).is_err());
    // Some(key) is the key itself, as in serde_json.
    let by_some: BTreeMap<Option<&str>, u8> = [(Some("k"), 1)].into_iter().collect();
    same_as_serde_json(&by_some);
}

/// A float map key (ordered by its bits, only so it can sit in a BTreeMap).
#[derive(PartialEq)]
struct Key(f64);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.to_bits().cmp(&other.0.to_bits())
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

#[test]
fn finite_float_keys_are_quoted_as_serde_json_quotes_them() {
    let keys: BTreeMap<Key, u8> = [(Key(1.5), 1), (Key(-0.25), 2)].into_iter().collect();
    same_as_serde_json(&keys);
}

#[test]
fn an_error_of_the_value_itself_is_passed_on() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value refuses"))
        }
    }
    assert_eq!(
        to_string(&vec![Fails]).unwrap_err().to_string(),
        "this value refuses"
    );
}
