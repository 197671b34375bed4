//! The names a serde type accepts, read from its derived `Deserialize`: a struct's field
//! names and an enum's variant names, after renaming. Error messages list them from there,
//! so a key added to a section's struct, or a value added to a setting's enum, is listed
//! without a second copy kept in step by hand.

use std::error::Error;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};

/// The names `T` accepts: its fields if it is a struct, its variants if it is an enum (each
/// as written in a file, after `rename_all`); empty for any other type.
pub(super) fn names<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(Probe) {
        Err(Probed(names)) => names,
        Ok(_) => &[],
    }
}

/// A deserializer that answers every request with the names it was asked to read: a
/// derived `Deserialize` passes its struct's fields or its enum's variants along.
struct Probe;

/// What [`Probe`] was asked for.
#[derive(Debug)]
struct Probed(&'static [&'static str]);

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the names {:?}", self.0)
    }
}

impl Error for Probed {}

impl de::Error for Probed {
    fn custom<T: fmt::Display>(_: T) -> Probed {
        Probed(&[])
    }
}

impl<'de> Deserializer<'de> for Probe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(fields))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(variants))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map identifier
        ignored_any
    }
}

/// A string setting that names a variant of the serde enum `T`. An unknown name is kept
/// rather than refused while parsing, so that the error can name the key and its line
/// ([`Locator::invalid_because`](super::error::Locator::invalid_because)) like every other
/// unusable value.
#[derive(Debug, Clone)]
pub(super) enum OneOf<T> {
    /// A name `T` accepts.
    Known(T),
    /// Any other text.
    Unknown(String),
}

impl<T: Copy + DeserializeOwned> OneOf<T> {
    /// The variant named, or an error listing the names `T` accepts.
    pub(super) fn get(&self) -> Result<T, UnknownName> {
        match self {
            OneOf::Known(value) => Ok(*value),
            OneOf::Unknown(given) => Err(UnknownName {
                given: given.clone(),
                allowed: names::<T>(),
            }),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOf<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let given = String::deserialize(deserializer)?;
        let name: StrDeserializer<'_, de::value::Error> = given.as_str().into_deserializer();
        Ok(match T::deserialize(name) {
            Ok(value) => OneOf::Known(value),
            Err(_) => OneOf::Unknown(given),
        })
    }
}

/// A setting's value is none of the names its enum accepts:
/// `"loose": use "strict" or "lenient"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UnknownName {
    given: String,
    allowed: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: use ", self.given)?;
        for (i, name) in self.allowed.iter().enumerate() {
            match i {
                0 => {}
                _ if i + 1 == self.allowed.len() => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            write!(f, "{name:?}")?;
        }
        Ok(())
    }
}

impl Error for UnknownName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Speed {
        Slow,
        QuiteFast,
        Fast,
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Section {
        first: u8,
        #[serde(rename = "second_key")]
        second: String,
    }

    #[test]
    fn names_are_the_fields_or_variants_as_written_in_a_file() {
        assert_eq!(names::<Section>(), ["first", "second_key"]);
        assert_eq!(names::<Speed>(), ["slow", "quite_fast", "fast"]);
        assert!(names::<String>().is_empty());
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let known: OneOf<Speed> = serde_json::from_str("\"quite_fast\"").unwrap();
        assert_eq!(known.get(), Ok(Speed::QuiteFast));
        let unknown: OneOf<Speed> = serde_json::from_str("\"warp\"").unwrap();
        assert_eq!(
            unknown.get().unwrap_err().to_string(),
            r#""warp": use "slow", "quite_fast" or "fast""#
        );
        assert!(
            serde_json::from_str::<OneOf<Speed>>("1").is_err(),
            "not a string"
        );
    }
}
