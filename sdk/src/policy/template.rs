//! Matching resource URIs against the URI templates of resource rules (RFC 6570, the
//! subset MCP servers use).
//!
//! `{name}` matches one or more characters other than `/` (simple expansion percent-
//! encodes reserved characters, so a value never contains a raw `/`); `{+name}` and
//! `{#name}` match one or more of any character (reserved expansion). Everything else
//! must match literally.

/// A parsed URI template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UriTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Segment,
    Any,
}

impl UriTemplate {
    /// Parses `text`; `None` when braces do not pair up or a variable is empty.
    pub(crate) fn parse(text: &str) -> Option<UriTemplate> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}')? + open;
            let var = &rest[open + 1..close];
            let (part, name) = match var.as_bytes().first() {
                Some(b'+' | b'#') => (Part::Any, &var[1..]),
                _ => (Part::Segment, var),
            };
            if name.is_empty() || name.contains('{') {
                return None;
            }
            parts.push(part);
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return None;
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Some(UriTemplate { parts })
    }

    /// Whether the template has variables (otherwise it names one URI).
    pub(crate) fn has_variables(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    /// Whether `uri` is an expansion of this template.
    pub(crate) fn matches(&self, uri: &str) -> bool {
        matches_from(&self.parts, uri)
    }
}

/// `text` with every `{variable}` replaced by `x`: a URI the template matches.
pub(crate) fn sample_expansion(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push('x');
                rest = &rest[open + close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn matches_from(parts: &[Part], uri: &str) -> bool {
    match parts.split_first() {
        None => uri.is_empty(),
        Some((Part::Literal(lit), rest)) => uri
            .strip_prefix(lit.as_str())
            .is_some_and(|tail| matches_from(rest, tail)),
        Some((var, rest)) => {
            // Try every non-empty prefix the variable may take; templates are short.
            let ends = uri.char_indices().map(|(i, _)| i).skip(1);
            for end in ends.chain(std::iter::once(uri.len())).filter(|&e| e > 0) {
                if *var == Part::Segment && uri[..end].contains('/') {
                    break;
                }
                if matches_from(rest, &uri[end..]) {
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_variables_match_one_segment() {
        let t = UriTemplate::parse("notes://{owner}/{id}").unwrap();
        assert!(t.matches("notes://alice/42"));
        assert!(!t.matches("notes://alice/42/x"));
        assert!(!t.matches("notes://alice/"));
        assert!(!t.matches("notes:///42"));
        assert!(!t.matches("files://alice/42"));
    }

    #[test]
    fn reserved_variables_match_across_slashes() {
        let t = UriTemplate::parse("file:///{+path}").unwrap();
        assert!(t.matches("file:///etc/hosts"));
        assert!(!t.matches("file:///"));
    }

    #[test]
    fn literal_templates_match_exactly() {
        let t = UriTemplate::parse("notes://index").unwrap();
        assert!(!t.has_variables());
        assert!(t.matches("notes://index"));
        assert!(!t.matches("notes://index2"));
    }

    #[test]
    fn sample_expansions_match_their_template() {
        for text in ["notes://{id}", "file:///{+path}/x", "a{b}c{d}"] {
            let sample = sample_expansion(text);
            assert!(
                UriTemplate::parse(text).unwrap().matches(&sample),
                "{text} -> {sample}"
            );
        }
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["a{", "a{}", "a}b", "{x{y}}"] {
            assert!(UriTemplate::parse(bad).is_none(), "{bad}");
        }
    }
}
