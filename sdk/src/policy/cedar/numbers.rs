//! JSON numbers as Cedar holds them: an `i64` for an integer argument, a `decimal` (at
//! most four places) for a number, and how that decimal's expression is made cheaply.

use std::sync::LazyLock;

use cedar_policy::RestrictedExpression;
use cedar_policy_core::ast::{Name, RestrictedExpr};
use ref_cast::RefCast;

/// A JSON number as an `i64`: an integer, or a float with no fractional part, in range.
pub(super) fn integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // `i64::MAX as f64` rounds up to 2^63, which is out of range: compare strictly.
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

/// A JSON number as the text of a Cedar `decimal`: at most 4 decimal places, within the
/// range of an `i64` counted in ten-thousandths.
pub(super) fn decimal(n: &serde_json::Number) -> Option<String> {
    // serde_json writes a number in its shortest form (an integer as it is, a float with a
    // `.` or an exponent), which is exact text for Cedar when it has no exponent.
    let mut text = n.to_string();
    if text.contains(['e', 'E']) {
        return None;
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if fraction.len() > 4 {
        return None;
    }
    // In range when the value in ten-thousandths fits an `i64`: the whole part times
    // 10,000, then the fraction (a digit string of at most 4) with the whole part's sign.
    let ten_thousandths = format!("{fraction:0<4}").parse::<i64>().ok()?;
    let scaled = whole.parse::<i64>().ok()?.checked_mul(10_000)?;
    let in_range = if whole.starts_with('-') {
        scaled.checked_sub(ten_thousandths)
    } else {
        scaled.checked_add(ten_thousandths)
    };
    in_range?;
    if fraction.is_empty() {
        text.push_str(".0");
    }
    Some(text)
}

/// The name of Cedar's `decimal` constructor, parsed once.
static DECIMAL: LazyLock<Name> = LazyLock::new(|| {
    Name::parse_unqualified_name("decimal").expect("`decimal` is a Cedar identifier")
});

/// A JSON number as the expression `decimal("<text>")`, `None` when Cedar cannot hold it
/// exactly ([`decimal`]).
///
/// The same expression as Cedar's `RestrictedExpression::new_decimal(text)` (a test says
/// so), built from Cedar's own expression tree with the constructor's name parsed once:
/// `new_decimal` runs Cedar's parser on the name `decimal` on every call, which builds a
/// lexer (several µs, most of a decision's cost when an argument is a number).
pub(crate) fn decimal_expression(n: &serde_json::Number) -> Option<RestrictedExpression> {
    let call =
        RestrictedExpr::call_extension_fn(DECIMAL.clone(), [RestrictedExpr::val(decimal(n)?)]);
    Some(RestrictedExpression::ref_cast(&call).clone())
}
