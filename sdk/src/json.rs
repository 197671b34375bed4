//! Strict JSON: objects with a repeated member name are refused, at any depth.
//!
//! RFC 7515 section 4 and RFC 7519 section 4 let a parser refuse duplicate members, and
//! RFC 8259 section 4 says behaviour with them is unpredictable: two parsers picking
//! different duplicates is a known way to make one component decide on one value and
//! another act on a different one. Token headers and claims, and the JSON-RPC bodies the
//! HTTP layer decides on, are all read with this parser.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::excerpt;

/// What kind of JSON value `v` is, for messages: `a string`, `an object`, `null`, ...
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a JSON object, refusing duplicate member names at any depth.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        other => Err(de::Error::invalid_type(
            unexpected(&other),
            &"a JSON object",
        )),
    }
}

/// Parses any JSON value, refusing duplicate member names at any depth.
pub(crate) fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// A JSON value read with duplicate member names refused at any depth.
pub(crate) struct Strict(pub(crate) Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(duplicate(&name));
            }
            let Strict(value) = access.next_value()?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

fn duplicate<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("duplicate member {:?}", excerpt(name)))
}

/// A JSON value of any shape, walked and dropped: [`Strict`]'s duplicate check for the
/// parts of a document nobody needs to keep, without building them.
#[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP layer only
pub(crate) struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(CheckedVisitor)
            .map(|()| Checked)
    }
}

#[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP layer only
struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Checked::deserialize(d).map(|_| ())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let mut names = Names::default();
        while let Some(Name(name)) = access.next_key()? {
            names.insert(name)?;
            access.next_value::<Checked>()?;
        }
        Ok(())
    }
}

/// A member name, borrowed from the input unless it has escapes.
#[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP layer only
pub(crate) struct Name<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(NameVisitor).map(Name)
    }
}

/// The member names of one object read so far: a short list for the objects messages
/// are made of, a hash set once an object has many members.
#[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP layer only
#[derive(Default)]
pub(crate) struct Names<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

#[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP layer only
impl<'de> Names<'de> {
    const FEW: usize = 16;

    /// Adds `name`; a name already there is the duplicate-member error.
    pub(crate) fn insert<E: de::Error>(&mut self, name: Cow<'de, str>) -> Result<(), E> {
        if self.few.len() < Self::FEW {
            if self.few.contains(&name) {
                return Err(duplicate(&name));
            }
            self.few.push(name);
            return Ok(());
        }
        if self.many.is_empty() {
            self.many.extend(self.few.iter().cloned());
        }
        if self.many.contains(&name) {
            return Err(duplicate(&name));
        }
        self.many.insert(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert!(parse_object(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_object(br#"{"p":{"name":"x","name":"y"}}"#).is_err());
        assert!(parse_object(br#"{"l":[{"k":1,"k":1}]}"#).is_err());
        let ok = parse_object(br#"{"a":{"b":[1,2.5,"s",null,true]},"c":-3}"#).unwrap();
        assert_eq!(ok["a"]["b"][1], serde_json::json!(2.5));
        assert_eq!(ok["c"], serde_json::json!(-3));
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(parse_object(b"[1]").is_err());
        assert!(parse_object(b"\"x\"").is_err());
        assert!(parse_value(b"[1]").is_ok());
        assert!(parse_value(b"{").is_err());
    }

    #[test]
    fn checked_walks_refuse_duplicates_at_any_depth_and_size() {
        let check = |s: &str| serde_json::from_str::<Checked>(s).is_ok();
        assert!(check(
            r#"{"a":{"b":[1,2.5,"s",null,true,{"c":{}}]},"\u0061b":-3}"#
        ));
        assert!(!check(r#"{"a":1,"a":2}"#));
        assert!(
            !check(r#"{"a":1,"\u0061":2}"#),
            "escaped names are compared decoded"
        );
        assert!(!check(r#"{"l":[{"k":1,"k":1}]}"#));
        let wide: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(check(&format!("{{{}}}", wide.join(","))));
        assert!(!check(&format!("{{{},\"k3\":0}}", wide.join(","))));
        assert!(!check(&format!("{{{},\"k39\":0}}", wide.join(","))));
        assert!(!check("{"));
    }

    #[test]
    fn big_numbers_keep_their_value() {
        let v = parse_value(b"18446744073709551615").unwrap();
        assert_eq!(v, serde_json::json!(u64::MAX));
    }
}
