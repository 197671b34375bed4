//! Reading a DPoP proof's claims: the five this crate checks (`jti`, `htm`, `htu`, `iat`,
//! `ath`) and `nonce`, from the decoded payload.
//!
//! A proof's payload is nearly always a flat JSON object of plain strings and integers, and
//! a server reads one per request, so a scanner reads that shape without allocating (the
//! strings borrowed from the payload). Anything else (an escape, a nested value, a float,
//! `null`, a repeated claim, trailing bytes) is handed to serde_json, which decides. The
//! scanner only ever answers where serde_json would give the same claims; a property test
//! holds it to that.

use std::borrow::Cow;

/// The claims of a proof this crate reads; others are ignored.
#[derive(Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub(super) struct ProofClaims<'a> {
    #[serde(borrow, default)]
    pub(super) jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) htm: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) htu: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) iat: Option<i64>,
    #[serde(borrow, default)]
    pub(super) ath: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) nonce: Option<Cow<'a, str>>,
}

impl<'a> ProofClaims<'a> {
    /// The claims of `payload`, a JSON object (a repeated claim is refused, as in any JWS
    /// this crate reads).
    ///
    /// # Errors
    /// What is wrong with the payload, for a `Malformed` proof.
    pub(super) fn read(payload: &'a [u8]) -> Result<ProofClaims<'a>, String> {
        match scan(payload) {
            Some(claims) => Ok(claims),
            None => read_with_serde(payload),
        }
    }
}

/// What [`scan`] leaves to serde_json; out of line, so the scanner's code stays compact.
#[cold]
#[inline(never)]
fn read_with_serde(payload: &[u8]) -> Result<ProofClaims<'_>, String> {
    // serde would also read a struct from a JSON array, by position.
    if payload.iter().find(|b| !is_space(**b)) != Some(&b'{') {
        return Err("the payload is not a JSON object".to_owned());
    }
    serde_json::from_slice(payload).map_err(|e| format!("the payload: {e}"))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The claims of a compact object of plain strings and integers, or `None` for
/// serde_json to read: any byte that is not printable ASCII (a control character, a
/// newline between tokens, UTF-8 beyond ASCII), an escape, a nested value, a float, a
/// negative number, `null`, a boolean, a repeated or mistyped claim, or bytes after the
/// object.
fn scan(payload: &[u8]) -> Option<ProofClaims<'_>> {
    // One pass over all bytes, without an early exit, so it runs many at a time: then no
    // string needs checking on its own, and each ends at the next quote.
    let plain = payload.iter().fold(true, |plain, b| {
        plain & (b' '..=b'~').contains(b) & (*b != b'\\')
    });
    let text = std::str::from_utf8(payload).ok().filter(|_| plain)?;
    let mut reader = Reader { text, at: 0 };
    let mut claims = ProofClaims::default();
    reader.expect(b'{')?;
    if reader.peek()? == b'}' {
        reader.at += 1;
    } else {
        loop {
            let name = reader.string()?;
            reader.expect(b':')?;
            match reader.peek()? {
                b'"' => {
                    let value = reader.string()?;
                    let slot = match name {
                        "jti" => Some(&mut claims.jti),
                        "htm" => Some(&mut claims.htm),
                        "htu" => Some(&mut claims.htu),
                        "ath" => Some(&mut claims.ath),
                        "nonce" => Some(&mut claims.nonce),
                        "iat" => return None,
                        _ => None,
                    };
                    if let Some(slot) = slot
                        && slot.replace(Cow::Borrowed(value)).is_some()
                    {
                        return None;
                    }
                }
                b'0'..=b'9' => {
                    let value = reader.integer()?;
                    match name {
                        "iat" if claims.iat.replace(value).is_some() => return None,
                        "jti" | "htm" | "htu" | "ath" | "nonce" => return None,
                        _ => {}
                    }
                }
                _ => return None,
            }
            match reader.next_byte()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
    }
    // Only spaces after the object.
    text.as_bytes()[reader.at..]
        .iter()
        .all(|b| *b == b' ')
        .then_some(claims)
}

/// The index of the first `"` in `bytes`, eight bytes at a time.
fn next_quote(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut le = [0_u8; 8];
        le.copy_from_slice(word);
        // A byte equal to `"` becomes zero; the lowest zero byte sets its high bit exactly.
        let x = u64::from_le_bytes(le) ^ QUOTES;
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = words.remainder().iter().position(|b| *b == b'"')?;
    Some(at + tail)
}

/// A cursor over a payload of printable ASCII without backslashes.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    /// The next byte that is not a space, not consumed.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while *bytes.get(self.at)? == b' ' {
            self.at += 1;
        }
        Some(bytes[self.at])
    }

    /// The next byte that is not a space, consumed.
    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next_byte()? == want).then_some(())
    }

    /// A string, its quotes consumed: the payload has no escapes, so it ends at the next
    /// quote.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = self.text.get(self.at..)?;
        let value = &rest[..next_quote(rest.as_bytes())?];
        self.at += value.len() + 1;
        Some(value)
    }

    /// A non-negative integer of at most 18 digits, without a leading zero, not followed by
    /// a fraction or an exponent.
    fn integer(&mut self) -> Option<i64> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        while bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = &bytes[start..self.at];
        if digits.len() > 18
            || (digits.len() > 1 && digits[0] == b'0')
            || matches!(bytes.get(self.at), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        // At most 18 digits: no overflow.
        Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn serde(payload: &[u8]) -> Option<ProofClaims<'_>> {
        serde_json::from_slice(payload).ok()
    }

    #[test]
    fn a_proof_as_clients_write_it_is_read_without_serde() {
        let payload = br#"{"jti":"e1j3V_bKic8-LAEB","htm":"POST","htu":"https://mcp.example.com/mcp","iat":1765000000,"ath":"fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo","nonce":"n-1","exp":1765000060}"#;
        let claims = scan(payload).expect("the scanner reads it");
        assert_eq!(claims.jti.as_deref(), Some("e1j3V_bKic8-LAEB"));
        assert_eq!(claims.iat, Some(1_765_000_000));
        assert!(matches!(claims.htu, Some(Cow::Borrowed(_))));
        assert_eq!(Some(claims), serde(payload));
        let spaced = br#" { "htm" : "GET" , "iat":0 } "#;
        assert_eq!(scan(spaced).unwrap().htm.as_deref(), Some("GET"));
        // Other whitespace is serde's to read.
        let lines = b"{\n\t\"htm\":\"GET\"\r}";
        assert_eq!(scan(lines), None);
        assert_eq!(
            ProofClaims::read(lines).unwrap().htm.as_deref(),
            Some("GET")
        );
    }

    #[test]
    fn other_shapes_are_left_to_serde_which_decides() {
        // Read by serde: an escape, a nested value, null.
        for payload in [
            r#"{"jti":"a\u0062","iat":1}"#,
            r#"{"jti":"ab","cnf":{"jkt":"x"},"iat":1}"#,
            r#"{"jti":"ab","nonce":null,"iat":1}"#,
        ] {
            assert_eq!(scan(payload.as_bytes()), None, "{payload}");
            let claims = ProofClaims::read(payload.as_bytes()).unwrap();
            assert_eq!(claims.jti.as_deref(), Some("ab"), "{payload}");
        }
        // Refused: a repeated or mistyped claim, a float, a non-object, bytes after it.
        for payload in [
            r#"{"jti":"a","jti":"b"}"#,
            r#"{"iat":1,"iat":2}"#,
            r#"{"iat":"1"}"#,
            r#"{"htm":1}"#,
            r#"{"iat":1.5}"#,
            r#"{"iat":01}"#,
            r#"["a","POST","https://x",1,"h","n"]"#,
            r#"{"jti":"a"} x"#,
            r#"{"jti":"a""#,
            "{\"jti\":\"a\u{1}\"}",
            "",
        ] {
            assert!(ProofClaims::read(payload.as_bytes()).is_err(), "{payload}");
        }
    }

    /// A payload of members from a small vocabulary, each value of some JSON kind, with
    /// whitespace between tokens, and sometimes a mutated byte.
    fn payloads() -> impl Strategy<Value = Vec<u8>> {
        let name = prop::sample::select(vec![
            "jti",
            "htm",
            "htu",
            "iat",
            "ath",
            "nonce",
            "exp",
            "x",
            "j\\u0074i",
            "",
        ]);
        let value = prop_oneof![
            "[a-zA-Z0-9_./:-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            "[a-z\\\\\"\u{1}é]{0,6}".prop_map(|s| format!("\"{s}\"")),
            any::<i64>().prop_map(|n| n.to_string()),
            (0_u64..100).prop_map(|n| format!("0{n}")),
            Just("1.5".to_owned()),
            Just("1e3".to_owned()),
            Just("-0".to_owned()),
            Just("99999999999999999999".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("{\"a\":[1,{}]}".to_owned()),
            Just("[]".to_owned()),
        ];
        let space = prop::sample::select(vec!["", "", " ", "\n\t", "\r "]);
        let member = (name, value, space.clone(), space.clone())
            .prop_map(|(n, v, a, b)| format!("{a}\"{n}\"{b}:{a}{v}{b}"));
        let mutation = prop::option::of((any::<prop::sample::Index>(), any::<u8>()));
        (prop::collection::vec(member, 0..8), space, mutation).prop_map(|(members, s, m)| {
            let mut bytes = format!("{s}{{{}}}{s}", members.join(",")).into_bytes();
            if let Some((at, byte)) = m {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn the_scanner_agrees_with_serde_json(payload in payloads()) {
            if let Some(claims) = scan(&payload) {
                prop_assert_eq!(Some(claims), serde(&payload));
            }
            // And reading, the scanner first, decides as serde does for objects.
            let starts_an_object = payload.iter().find(|b| !is_space(**b)) == Some(&b'{');
            if starts_an_object {
                prop_assert_eq!(ProofClaims::read(&payload).ok(), serde(&payload));
            } else {
                prop_assert!(ProofClaims::read(&payload).is_err());
            }
        }
    }
}
