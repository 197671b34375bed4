//! How call arguments appear in events: a keyed digest always, the clear value only when
//! asked for, with named fields redacted.
//!
//! The digest is HMAC-SHA256 over the arguments' canonical JSON (object keys sorted by
//! their UTF-16 code units as RFC 8785 sorts them, no insignificant whitespace, strings
//! and numbers as `serde_json` writes them), so equal arguments give equal digests
//! whatever order a client sent the keys in, and an operator holding the key can check
//! whether given arguments were used, while a reader of the log cannot recover them.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};

/// The text that replaces a redacted field's value.
pub const REDACTED: &str = "[redacted]";

/// The shortest HMAC key accepted, in bytes (RFC 2104 section 3: at least the hash's
/// output length).
pub const MIN_KEY_BYTES: usize = 32;

/// How arguments are recorded: the HMAC key, and whether (and how) clear values are kept.
#[derive(Clone)]
pub struct ArgumentRecording {
    key: hmac::Key,
    key_source: &'static str,
    clear: bool,
    redact: Vec<String>,
}

impl fmt::Debug for ArgumentRecording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("ArgumentRecording")
            .field("key", &self.key_source)
            .field("clear", &self.clear)
            .field("redact", &self.redact)
            .finish()
    }
}

/// Why an HMAC key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLengthError {
    /// The key is shorter than [`MIN_KEY_BYTES`].
    #[error(
        "the audit HMAC key has {0} bytes; use at least 32 random bytes (e.g. `openssl rand -hex 32`)"
    )]
    TooShort(usize),
}

impl ArgumentRecording {
    /// Digests under a random key made now: digests compare within this process only.
    /// Set a key with [`ArgumentRecording::with_key`] to compare them across restarts.
    ///
    /// # Panics
    /// Never in practice: only if the operating system's random generator fails, when
    /// no key can be made safely.
    pub fn random_key() -> ArgumentRecording {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random generator failed");
        ArgumentRecording::from_bytes(&bytes, "random, this process only")
    }

    /// Digests under `key` (at least [`MIN_KEY_BYTES`] bytes).
    ///
    /// # Errors
    /// [`KeyLengthError::TooShort`] for a short key.
    pub fn with_key(key: &[u8]) -> Result<ArgumentRecording, KeyLengthError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyLengthError::TooShort(key.len()));
        }
        Ok(ArgumentRecording::from_bytes(key, "configured"))
    }

    fn from_bytes(key: &[u8], key_source: &'static str) -> ArgumentRecording {
        ArgumentRecording {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            key_source,
            clear: false,
            redact: Vec::new(),
        }
    }

    /// Also records the arguments in clear, with the values of object fields named in
    /// `redact` (at any depth, matched exactly) replaced by [`REDACTED`]. Off by default:
    /// arguments often carry personal data.
    #[must_use]
    pub fn clear_with_redaction<S: Into<String>>(
        mut self,
        redact: impl IntoIterator<Item = S>,
    ) -> ArgumentRecording {
        self.clear = true;
        self.redact = redact.into_iter().map(Into::into).collect();
        self
    }

    /// Whether clear arguments are recorded.
    pub fn records_clear(&self) -> bool {
        self.clear
    }

    /// The HMAC-SHA256 of `arguments`' canonical JSON, in lowercase hex.
    pub fn digest(&self, arguments: &Value) -> String {
        let mut canonical = Vec::with_capacity(256);
        write_canonical(arguments, &mut canonical);
        hex::encode(self.sign(&canonical))
    }

    /// What an event records of a call's `arguments` object, from the borrowed object:
    /// the digest's bytes (the writer puts them in hex), and the clear value only when
    /// configured. The digest is [`ArgumentRecording::digest`] of the object.
    pub(crate) fn describe(&self, arguments: &Map<String, Value>) -> Arguments {
        let mut canonical = Vec::with_capacity(256);
        write_object(arguments, &mut canonical);
        Arguments {
            hmac: self.sign(&canonical),
            clear: self.clear.then(|| redact_object(arguments, &self.redact)),
        }
    }

    fn sign(&self, canonical: &[u8]) -> [u8; DIGEST_BYTES] {
        let tag = hmac::sign(&self.key, canonical);
        let mut bytes = [0; DIGEST_BYTES];
        bytes.copy_from_slice(tag.as_ref());
        bytes
    }

    /// The clear arguments to record, redacted, when configured; else `None`.
    pub fn clear(&self, arguments: &Value) -> Option<Value> {
        self.clear.then(|| redact(arguments, &self.redact))
    }
}

/// The bytes of an HMAC-SHA256 digest.
const DIGEST_BYTES: usize = 32;

/// What an event records of a call's arguments, as the request path leaves it.
#[derive(Debug, Clone)]
pub(crate) struct Arguments {
    /// The HMAC-SHA256 of their canonical JSON.
    pub(crate) hmac: [u8; DIGEST_BYTES],
    /// The clear, redacted value, when configured.
    pub(crate) clear: Option<Value>,
}

/// `value` with the values of fields named in `names` replaced, at any depth.
fn redact(value: &Value, names: &[String]) -> Value {
    match value {
        Value::Object(map) => redact_object(map, names),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, names)).collect()),
        other => other.clone(),
    }
}

/// [`redact`] of an object.
fn redact_object(map: &Map<String, Value>, names: &[String]) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| {
                let v = if names.iter().any(|n| n == k) {
                    Value::String(REDACTED.to_owned())
                } else {
                    redact(v, names)
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

/// Appends the canonical JSON of `value` to `out`: strings and numbers as `serde_json`
/// writes them, object members sorted by the UTF-16 code units of their names.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// [`write_canonical`] of an object.
fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_scalar(k, out);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// Appends a string or scalar as `serde_json` writes it, without an intermediate copy.
fn write_scalar(value: &(impl serde::Serialize + ?Sized), out: &mut Vec<u8>) {
    // Writing a string, number, boolean or null into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hmac_sha256_matches_rfc_4231_test_case_2() {
        // RFC 4231 section 4.3: key "Jefe", data "what do ya want for nothing?". The
        // digest function takes JSON, so check the primitive under it directly.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_digest_ignores_key_order_and_depends_on_the_key() {
        let a = ArgumentRecording::with_key(&[7; 32]).unwrap();
        let b = ArgumentRecording::with_key(&[8; 32]).unwrap();
        let x = json!({"title": "t", "body": {"z": 1, "a": [1, "é"]}});
        let y = json!({"body": {"a": [1, "é"], "z": 1}, "title": "t"});
        assert_eq!(a.digest(&x), a.digest(&y));
        assert_ne!(a.digest(&x), b.digest(&x));
        assert_ne!(a.digest(&x), a.digest(&json!({"title": "u"})));
        assert_eq!(a.digest(&x).len(), 64);
    }

    #[test]
    fn canonical_json_sorts_keys_by_utf16_units() {
        let mut out = Vec::new();
        // U+E000 sorts after U+1F600 in UTF-16 (the latter is a surrogate pair, 0xD83D..).
        write_canonical(
            &json!({"\u{e000}": 1, "\u{1f600}": 2, "a": [true, null]}),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\":[true,null],\"\u{1f600}\":2,\"\u{e000}\":1}"
        );
        // Escapes as serde_json writes them.
        let mut out = Vec::new();
        write_canonical(&json!({"q\"\n": "\u{1}x", "n": 1.5, "m": -3}), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"m":-3,"n":1.5,"q\"\n":"\u0001x"}"#
        );
    }

    #[test]
    fn describing_a_borrowed_object_gives_the_digest_and_the_clear_value() {
        let args = json!({"title": "t", "password": "p", "n": [1, {"password": "q"}]});
        let map = args.as_object().unwrap();
        let digest_only = ArgumentRecording::with_key(&[7; 32]).unwrap();
        let described = digest_only.describe(map);
        assert_eq!(hex::encode(described.hmac), digest_only.digest(&args));
        assert_eq!(described.clear, None);
        let clear = digest_only.clone().clear_with_redaction(["password"]);
        let described = clear.describe(map);
        assert_eq!(hex::encode(described.hmac), clear.digest(&args));
        assert_eq!(described.clear, clear.clear(&args));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            ArgumentRecording::with_key(b"short").unwrap_err(),
            KeyLengthError::TooShort(5)
        );
    }

    #[test]
    fn clear_arguments_only_when_asked_and_redacted_at_any_depth() {
        let args = json!({"title": "t", "password": "p", "nested": [{"password": "q", "x": 1}]});
        let digest_only = ArgumentRecording::random_key();
        assert_eq!(digest_only.clear(&args), None);
        let clear = ArgumentRecording::random_key().clear_with_redaction(["password"]);
        assert_eq!(
            clear.clear(&args),
            Some(
                json!({"title": "t", "password": REDACTED, "nested": [{"password": REDACTED, "x": 1}]})
            )
        );
        assert!(!format!("{clear:?}").contains("Key"), "{clear:?}");
    }
}
