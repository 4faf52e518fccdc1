//! Compact JSON text of serde types, byte for byte what `serde_json::to_string` writes, with a string escape that checks eight bytes at a time.
//!
//! Task bodies are mostly strings: escaping them one byte at a time, as serde_json does, was
//! a seventh of the intake's instructions (`docs/benchmarks.md`). The writer here finds the
//! bytes to escape (`"`, `\` and the controls below U+0020) a 64-bit word at a time and writes
//! straight into a `String`, so the text needs no second UTF-8 check. Everything else
//! (structures, enums, map keys, numbers) is written as serde_json writes it; the tests compare
//! the two on every task the fixture corpus plans.

use std::fmt;

use serde::ser::{self, Serialize};

/// The struct name serde_json gives a `RawValue` when it serialises one (its text is written
/// as it is, not as a string).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Why a value has no JSON text: a map key that is not a string, a number or a boolean, or an
/// error the value's own `Serialize` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        EncodeError(message.to_string())
    }
}

/// The compact JSON text of `value`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, EncodeError> {
    let mut out = String::with_capacity(128);
    write(&mut out, value)?;
    Ok(out)
}

/// Appends the compact JSON text of `value` to `out`. On an error, `out` may hold part of it.
pub fn write<T: Serialize + ?Sized>(out: &mut String, value: &T) -> Result<(), EncodeError> {
    value.serialize(Writer { out })
}

/// `"text"`, escaped as serde_json escapes it: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and
/// `\u00XX` (lower-case hex) for the other controls; everything else, non-ASCII included, as is.
pub fn write_str(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let bytes = text.as_bytes();
    // `run` is where the bytes not yet copied start; every escape is an ASCII byte, so both
    // ends of a run are character boundaries.
    let mut run = 0;
    let mut at = 0;
    while at < bytes.len() {
        let mask = escape_mask(word_at(bytes, at));
        if mask == 0 {
            at += 8;
            continue;
        }
        // The lowest flagged byte is exact (false flags only ever sit above a true one), so it
        // is a byte of the text: the padding past its end is never flagged.
        let escaped = at + (mask.trailing_zeros() / 8) as usize;
        out.push_str(&text[run..escaped]);
        push_escape(out, bytes[escaped]);
        run = escaped + 1;
        at = run;
    }
    out.push_str(&text[run..]);
    out.push('"');
}

/// The eight bytes from `at` as a little-endian word; past the end, bytes that need no
/// escape (`a`).
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let rest = &bytes[at..];
    if let Some(word) = rest.first_chunk::<8>() {
        return u64::from_le_bytes(*word);
    }
    // The last few bytes, shifted in one by one (a copy of a variable length is a call).
    let mut word = ONES * u64::from(b'a');
    for (index, byte) in rest.iter().enumerate() {
        let shift = 8 * index;
        word = (word & !(0xff << shift)) | (u64::from(*byte) << shift);
    }
    word
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that is below 0x20, a quote or a backslash (the
/// bit-twiddling `hasless`/`haszero` forms: a byte is flagged wrongly only above a byte that
/// is flagged rightly, so "any" and "the lowest" are exact).
fn escape_mask(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v;
    (below_space | has_zero(quote) | has_zero(backslash)) & HIGH_BITS
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match byte {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        0x08 => out.push_str("\\b"),
        0x0c => out.push_str("\\f"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        _ => {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

fn write_integer(out: &mut String, value: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// Floats as serde_json writes them (its shortest round-trip form; `null` when not finite).
fn write_float<F: Serialize>(out: &mut String, value: F) -> Result<(), EncodeError> {
    let text = serde_json::to_string(&value).map_err(|err| EncodeError(err.to_string()))?;
    out.push_str(&text);
    Ok(())
}

/// The serializer: a `String` it appends to.
struct Writer<'a> {
    out: &'a mut String,
}

/// An array or object being written; `close` is what ends it (`]`, `}`, or `]}` / `}}` for
/// the object a tuple or struct variant is wrapped in).
struct Compound<'a> {
    out: &'a mut String,
    first: bool,
    close: &'static str,
    raw: bool,
}

impl<'a> Compound<'a> {
    fn open(out: &'a mut String, open: &str, close: &'static str) -> Self {
        out.push_str(open);
        Compound {
            out,
            first: true,
            close,
            raw: false,
        }
    }

    /// The object `{"variant":…}` a tuple or struct variant is wrapped in, opened up to its
    /// value's own `open`.
    fn variant(out: &'a mut String, variant: &str, open: &str, close: &'static str) -> Self {
        out.push('{');
        write_str(out, variant);
        Compound::open(out, open, close)
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.separate();
        value.serialize(Writer { out: self.out })
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        if self.raw {
            // A RawValue's one field is its JSON text, written as it is.
            let text = serde_json::to_value(value)
                .map_err(|err| EncodeError(err.to_string()))?
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| EncodeError("a raw JSON value is not text".into()))?;
            self.out.push_str(&text);
            return Ok(());
        }
        self.separate();
        write_str(self.out, key);
        self.out.push(':');
        value.serialize(Writer { out: self.out })
    }

    /// A map key: a string as it is; a number or boolean in quotes, as serde_json writes them;
    /// anything else is refused.
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.separate();
        let start = self.out.len();
        key.serialize(Writer { out: self.out })?;
        let written = &self.out[start..];
        let quoted = written.starts_with('"');
        let scalar = written == "true"
            || written == "false"
            || written.starts_with(|c: char| c == '-' || c.is_ascii_digit());
        if scalar {
            self.out.insert(start, '"');
            self.out.push('"');
        } else if !quoted {
            self.out.truncate(start);
            return Err(EncodeError("key must be a string".into()));
        }
        self.out.push(':');
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(Writer { out: self.out })
    }

    fn close(self) -> Result<(), EncodeError> {
        self.out.push_str(self.close);
        Ok(())
    }
}

/// `Serializer` methods that write an integer as serde_json does (itoa's digits).
macro_rules! integers {
    ($($method:ident: $integer:ty),* $(,)?) => {$(
        fn $method(self, value: $integer) -> Result<(), EncodeError> {
            write_integer(self.out, value);
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, value: bool) -> Result<(), EncodeError> {
        self.out.push_str(if value { "true" } else { "false" });
        Ok(())
    }

    integers! {
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128,
    }

    fn serialize_f32(self, value: f32) -> Result<(), EncodeError> {
        write_float(self.out, value)
    }

    fn serialize_f64(self, value: f64) -> Result<(), EncodeError> {
        write_float(self.out, value)
    }

    fn serialize_char(self, value: char) -> Result<(), EncodeError> {
        write_str(self.out, value.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, value: &str) -> Result<(), EncodeError> {
        write_str(self.out, value);
        Ok(())
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), EncodeError> {
        let mut array = Compound::open(self.out, "[", "]");
        for byte in value {
            array.separate();
            write_integer(array.out, *byte);
        }
        array.close()
    }

    fn serialize_none(self) -> Result<(), EncodeError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.out.push_str("null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        write_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.out.push('{');
        write_str(self.out, variant);
        self.out.push(':');
        value.serialize(Writer { out: self.out })?;
        self.out.push('}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::open(self.out, "[", "]"))
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, EncodeError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::variant(self.out, variant, ":[", "]}"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::open(self.out, "{", "}"))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        if name == RAW_VALUE_TOKEN {
            let mut raw = Compound::open(self.out, "", "");
            raw.raw = true;
            return Ok(raw);
        }
        Ok(Compound::open(self.out, "{", "}"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::variant(self.out, variant, ":{", "}}"))
    }
}

/// The compound traits whose items are values in order: arrays, and a tuple variant's array.
macro_rules! elements {
    ($($compound:ident::$method:ident),* $(,)?) => {$(
        impl ser::$compound for Compound<'_> {
            type Ok = ();
            type Error = EncodeError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
                self.element(value)
            }

            fn end(self) -> Result<(), EncodeError> {
                self.close()
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// The compound traits whose items are named fields: structs and a struct variant's object.
macro_rules! fields {
    ($($compound:ident),* $(,)?) => {$(
        impl ser::$compound for Compound<'_> {
            type Ok = ();
            type Error = EncodeError;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), EncodeError> {
                self.field(key, value)
            }

            fn end(self) -> Result<(), EncodeError> {
                self.close()
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.value(value)
    }

    fn end(self) -> Result<(), EncodeError> {
        self.close()
    }
}

#[cfg(test)]
mod tests;
