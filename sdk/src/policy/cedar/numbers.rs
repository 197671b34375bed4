//! JSON numbers as Cedar holds them: an `i64` for an integer argument, the text of a
//! `decimal` (at most four places) for a number, and a number's identity, by which the
//! stage keeps the decimal expressions it made.

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
    pub(crate) fn of(n: &serde_json::Number) -> NumberKey {
        match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => NumberKey::Int(i),
            (None, Some(u)) => NumberKey::Uint(u),
            _ => NumberKey::Float(n.as_f64().unwrap_or(f64::NAN).to_bits()),
        }
    }
}

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
