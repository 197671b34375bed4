//! Scope requirements as expressions: one scope, all of several, any of several, nested.
//!
//! The text form is what configuration files and tool metadata use: scopes separated by
//! spaces must all be held (as in an OAuth `scope` string), `|` separates alternatives,
//! parentheses group. `"notes:admin ops:purge"` needs both; `"notes:write | notes:admin"`
//! needs either; `"(a | b) c"` needs `c` and one of `a`, `b`. Space binds tighter than `|`.

use std::fmt;

use crate::error::ExprError;

/// What an operation needs from the caller's granted scopes.
///
/// ```
/// use rmcp_authz::policy::{ScopeExpr, all_of, any_of};
/// let e = ScopeExpr::parse("(notes:write | notes:admin) audit:read")?;
/// assert_eq!(e, all_of([any_of(["notes:write", "notes:admin"]), "audit:read".into()]));
/// assert_eq!(e.to_string(), "(notes:write | notes:admin) audit:read");
/// # Ok::<(), rmcp_authz::policy::ExprError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScopeExpr {
    /// One scope must be held.
    Scope(String),
    /// Every part must hold. `AllOf(vec![])` holds for any authenticated caller.
    AllOf(Vec<ScopeExpr>),
    /// At least one part must hold. Must not be empty.
    AnyOf(Vec<ScopeExpr>),
}

/// Every part must hold.
pub fn all_of<E: Into<ScopeExpr>>(parts: impl IntoIterator<Item = E>) -> ScopeExpr {
    ScopeExpr::AllOf(parts.into_iter().map(Into::into).collect())
}

/// At least one part must hold.
pub fn any_of<E: Into<ScopeExpr>>(parts: impl IntoIterator<Item = E>) -> ScopeExpr {
    ScopeExpr::AnyOf(parts.into_iter().map(Into::into).collect())
}

impl From<&str> for ScopeExpr {
    /// The text form, read as configuration files read it (see the module docs):
    /// `"notes:read"` is one scope, `"a b"` needs both, `"a | b"` either, and `""` needs
    /// no scope (any authenticated caller). Text that does not parse is kept as it is, and
    /// [`ScopeExpr::validate`] (which `PolicyBuilder::build` runs) reports its error; use
    /// [`ScopeExpr::parse`] to see the error at once.
    fn from(text: &str) -> Self {
        from_text(text).unwrap_or_else(|_| ScopeExpr::Scope(text.to_owned()))
    }
}

impl From<String> for ScopeExpr {
    /// As `From<&str>`.
    fn from(text: String) -> Self {
        ScopeExpr::from(text.as_str())
    }
}

/// A requirement in the text form, as code (`From<&str>`) and configuration files read
/// it: empty (or blank) needs no scope, anything else is parsed.
pub(crate) fn from_text(text: &str) -> Result<ScopeExpr, ExprError> {
    if text.trim().is_empty() {
        Ok(ScopeExpr::authenticated())
    } else {
        ScopeExpr::parse(text)
    }
}

impl ScopeExpr {
    /// Holds for any authenticated caller: no scope is needed.
    pub fn authenticated() -> ScopeExpr {
        ScopeExpr::AllOf(Vec::new())
    }

    /// Parses the text form (see the module docs).
    ///
    /// # Errors
    /// [`ExprError::Syntax`] naming the position, or [`ExprError::InvalidScope`].
    pub fn parse(text: &str) -> Result<ScopeExpr, ExprError> {
        let mut parser = Parser { text, pos: 0 };
        parser.skip_spaces();
        if parser.at_end() {
            return Err(parser.error("an expression needs at least one scope"));
        }
        let expr = parser.alternatives()?;
        parser.skip_spaces();
        if !parser.at_end() {
            return Err(parser.error("unexpected character"));
        }
        expr.validate()?;
        Ok(expr)
    }

    /// Checks every scope name and that no `any of` is empty.
    ///
    /// # Errors
    /// [`ExprError::InvalidScope`] or [`ExprError::EmptyAnyOf`].
    pub fn validate(&self) -> Result<(), ExprError> {
        match self {
            ScopeExpr::Scope(s) if valid_scope(s) => Ok(()),
            // Text kept whole by `From<&str>` because it does not parse: its syntax error.
            ScopeExpr::Scope(s) if s.bytes().any(is_syntax) => match ScopeExpr::parse(s) {
                Err(syntax @ ExprError::Syntax { .. }) => Err(syntax),
                _ => Err(ExprError::InvalidScope { scope: s.clone() }),
            },
            ScopeExpr::Scope(s) => Err(ExprError::InvalidScope { scope: s.clone() }),
            ScopeExpr::AllOf(parts) => parts.iter().try_for_each(ScopeExpr::validate),
            ScopeExpr::AnyOf(parts) if parts.is_empty() => Err(ExprError::EmptyAnyOf),
            ScopeExpr::AnyOf(parts) => parts.iter().try_for_each(ScopeExpr::validate),
        }
    }

    /// Every scope the expression mentions, in order, without repeats.
    pub fn scopes(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            ScopeExpr::Scope(s) => {
                if !out.contains(&s.as_str()) {
                    out.push(s);
                }
            }
            ScopeExpr::AllOf(parts) | ScopeExpr::AnyOf(parts) => {
                parts.iter().for_each(|p| p.collect(out));
            }
        }
    }

    /// Whether the expression holds when `has(scope)` says which scopes are held.
    pub fn is_met_by(&self, has: &impl Fn(&str) -> bool) -> bool {
        match self {
            ScopeExpr::Scope(s) => has(s),
            ScopeExpr::AllOf(parts) => parts.iter().all(|p| p.is_met_by(has)),
            ScopeExpr::AnyOf(parts) => parts.iter().any(|p| p.is_met_by(has)),
        }
    }

    /// One set of scopes that meets the expression, choosing among alternatives the one
    /// that needs the fewest scopes not yet held (the first on a tie), and one that does
    /// not need `offline_access` over one that does (a challenge never names it, so an
    /// alternative that needs it could not be asked for). This is what a step-up challenge
    /// asks for.
    pub fn scopes_to_request(&self, has: &impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        self.choose(has, &mut out);
        out
    }

    fn choose(&self, has: &impl Fn(&str) -> bool, out: &mut Vec<String>) {
        match self {
            ScopeExpr::Scope(s) => {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
            ScopeExpr::AllOf(parts) => parts.iter().for_each(|p| p.choose(has, out)),
            ScopeExpr::AnyOf(parts) => {
                let best = parts.iter().min_by_key(|p| {
                    let mut picked = Vec::new();
                    p.choose(has, &mut picked);
                    let missing = || picked.iter().filter(|s| !has(s));
                    let needs_refresh = missing().any(|s| s == "offline_access");
                    (needs_refresh, missing().count())
                });
                if let Some(best) = best {
                    best.choose(has, out);
                }
            }
        }
    }
}

impl fmt::Display for ScopeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part(e: &ScopeExpr, in_all: bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match e {
                ScopeExpr::AnyOf(parts) if in_all && parts.len() > 1 => {
                    f.write_str("(")?;
                    write!(f, "{e}")?;
                    f.write_str(")")
                }
                ScopeExpr::AllOf(parts) if !in_all && parts.len() > 1 => {
                    f.write_str("(")?;
                    write!(f, "{e}")?;
                    f.write_str(")")
                }
                _ => write!(f, "{e}"),
            }
        }
        match self {
            ScopeExpr::Scope(s) => f.write_str(s),
            ScopeExpr::AllOf(parts) if parts.is_empty() => f.write_str("(authenticated)"),
            ScopeExpr::AllOf(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    part(p, true, f)?;
                }
                Ok(())
            }
            ScopeExpr::AnyOf(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    part(p, false, f)?;
                }
                Ok(())
            }
        }
    }
}

/// RFC 6749 section 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, without the
/// characters of the expression syntax (`|`, `(`, `)`), which no requirement could name.
pub(crate) fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            (b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)) && !is_syntax(b)
        })
}

/// Whether `b` belongs to the expression syntax: a separator or a grouping.
fn is_syntax(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'|' | b'(' | b')')
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn error(&self, reason: &'static str) -> ExprError {
        ExprError::Syntax {
            text: self.text.to_owned(),
            reason,
            position: self.pos,
        }
    }

    /// `term ('|' term)*`
    fn alternatives(&mut self) -> Result<ScopeExpr, ExprError> {
        let mut parts = vec![self.conjunction()?];
        loop {
            self.skip_spaces();
            if self.peek() != Some(b'|') {
                break;
            }
            self.pos += 1;
            parts.push(self.conjunction()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            ScopeExpr::AnyOf(parts)
        })
    }

    /// `factor (' ' factor)*`
    fn conjunction(&mut self) -> Result<ScopeExpr, ExprError> {
        let mut parts = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                None | Some(b'|') | Some(b')') => break,
                _ => parts.push(self.factor()?),
            }
        }
        match parts.len() {
            0 => Err(self.error("expected a scope or '('")),
            1 => Ok(parts.remove(0)),
            _ => Ok(ScopeExpr::AllOf(parts)),
        }
    }

    /// `scope | '(' alternatives ')'`
    fn factor(&mut self) -> Result<ScopeExpr, ExprError> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let inner = self.alternatives()?;
            self.skip_spaces();
            if self.peek() != Some(b')') {
                return Err(self.error("expected ')'"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'(' | b')' | b'|'))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a scope"));
        }
        Ok(ScopeExpr::Scope(self.text[start..self.pos].to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_code_reads_as_in_configuration_files() {
        assert_eq!(
            ScopeExpr::from("notes:read"),
            ScopeExpr::Scope("notes:read".into())
        );
        assert_eq!(ScopeExpr::from("a b"), all_of(["a", "b"]));
        assert_eq!(
            ScopeExpr::from("a | b c"),
            any_of([ScopeExpr::from("a"), all_of(["b", "c"])])
        );
        assert_eq!(ScopeExpr::from(" "), ScopeExpr::authenticated());
        assert_eq!(
            ScopeExpr::from(String::from("(a | b) c")),
            from_text("(a | b) c").unwrap()
        );
        // Text that does not parse is refused when validated, with its syntax error.
        let kept = ScopeExpr::from("a (b");
        assert!(
            matches!(kept.validate(), Err(ExprError::Syntax { position: 4, .. })),
            "{kept:?}"
        );
        assert!(matches!(
            ScopeExpr::from("a\"b").validate(),
            Err(ExprError::InvalidScope { .. })
        ));
        // The expression's own characters cannot be part of a scope.
        for scope in ["a|b", "f(x)", "(", "a b"] {
            assert!(!valid_scope(scope), "{scope}");
        }
    }

    #[test]
    fn juxtaposition_binds_tighter_than_bar() {
        assert_eq!(
            ScopeExpr::parse("a b | c").unwrap(),
            any_of([all_of(["a", "b"]), "c".into()])
        );
        assert_eq!(
            ScopeExpr::parse("a (b | c)").unwrap(),
            all_of(["a".into(), any_of(["b", "c"])])
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "a",
            "a b",
            "a | b",
            "(a | b) c",
            "a b | c d",
            "((a | b) c) | d",
        ] {
            let e = ScopeExpr::parse(text).unwrap();
            assert_eq!(ScopeExpr::parse(&e.to_string()).unwrap(), e, "{text}");
        }
    }

    #[test]
    fn syntax_errors_name_the_position() {
        for (text, pos) in [
            ("", 0),
            ("a |", 3),
            ("(a b", 4),
            ("a)", 1),
            ("| a", 0),
            ("()", 1),
        ] {
            match ScopeExpr::parse(text) {
                Err(ExprError::Syntax { position, .. }) => assert_eq!(position, pos, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_scope_characters_are_refused() {
        assert!(matches!(
            ScopeExpr::parse("a\"b"),
            Err(ExprError::InvalidScope { .. })
        ));
        assert!(ScopeExpr::Scope("has space".into()).validate().is_err());
        assert!(any_of(Vec::<ScopeExpr>::new()).validate().is_err());
        assert!(ScopeExpr::authenticated().validate().is_ok());
    }

    #[test]
    fn evaluation_and_step_up_choice() {
        let e = ScopeExpr::parse("(a | b c) d").unwrap();
        let held = ["b", "d"];
        let has = |s: &str| held.contains(&s);
        assert!(!e.is_met_by(&has));
        // "a" needs one new scope, "b c" needs one new scope (c): tie, first wins.
        assert_eq!(e.scopes_to_request(&has), ["a", "d"]);
        let held = ["b", "c", "d"];
        assert!(e.is_met_by(&|s: &str| held.contains(&s)));
        assert_eq!(e.scopes(), ["a", "b", "c", "d"]);
        assert!(ScopeExpr::authenticated().is_met_by(&|_: &str| false));
    }
}
