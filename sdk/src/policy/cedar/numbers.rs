//! JSON numbers as Cedar holds them: an `i64` for an integer argument, the text of a
//! `decimal` (at most four places) for a number, and a number's identity, by which the
//! stage keeps the decimal expressions it made.

use std::sync::LazyLock;

/// A JSON number as an `i64`: an integer, or a float with no fractional part, in range.
pub(super) fn integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // `i64::MAX as f64` rounds up to 2^63, which is out of range: compare strictly.
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

/// A JSON number's identity (what serde_json holds of it), to keep what was made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NumberKey {
    /// A negative or small integer.
    Int(i64),
    /// An integer beyond `i64`.
    Uint(u64),
    /// A float, by its bits.
    Float(u64),
}

impl NumberKey {
    /// The key of `n`; `None` when serde_json keeps numbers as text (its
    /// `arbitrary_precision` feature, which another crate in a build can turn on): then a
    /// float's bits do not say what was written (`1e2` and `100.0` are both 100), and
    /// nothing is kept by them.
    pub(crate) fn of(n: &serde_json::Number) -> Option<NumberKey> {
        match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Some(NumberKey::Int(i)),
            (None, Some(u)) => Some(NumberKey::Uint(u)),
            _ if *NUMBERS_AS_TEXT => None,
            _ => Some(NumberKey::Float(n.as_f64()?.to_bits())),
        }
    }
}

/// Whether serde_json keeps numbers as written (`arbitrary_precision`): then `1e2` reads
/// back as `1e2`, not `100.0`.
static NUMBERS_AS_TEXT: LazyLock<bool> = LazyLock::new(|| {
    serde_json::from_str::<serde_json::Number>("1e2").map_or(true, |n| n.to_string() != "100.0")
});

/// A JSON number as the text of a Cedar `decimal`: at most 4 decimal places, within the
/// range of an `i64` counted in ten-thousandths.
pub(crate) fn decimal(n: &serde_json::Number) -> Option<String> {
    if let Some(i) = n.as_i64() {
        return (i.checked_mul(10_000).is_some()).then(|| format!("{i}.0"));
    }
    // serde_json writes a float in its shortest form, which is exact text for Cedar when
    // it has no exponent.
    let text = n.to_string();
    if text.contains(['e', 'E']) {
        return None;
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, "0"));
    let places = fraction.len();
    if places > 4 {
        return None;
    }
    // In range when the value in ten-thousandths fits an `i64`.
    format!("{whole}{fraction:0<4}").parse::<i64>().ok()?;
    Some(format!("{whole}.{fraction}"))
}
