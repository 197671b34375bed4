//! Scope hierarchies and wildcards: what a set of granted scopes amounts to.
//!
//! The MCP authorization specification (2026-07-28) says servers MUST account for scope
//! hierarchies when deciding. A server declares that one scope implies others
//! (`notes:admin` implies `notes:write`, which implies `notes:read`); implication is
//! transitive and resolved once, when the policy is built. A granted scope ending in `:*`
//! is a wildcard: `notes:*` holds every scope that starts with `notes:`. A bare `*` is not
//! a wildcard (it would mean "everything" and is far too easy to grant by mistake).
//!
//! Decisions do not evaluate this string form: [`compiled`](super::compiled) interns it
//! into bit sets when the policy is built. [`Hierarchy::grants`], kept for tests, is the
//! reference the compiled form is checked against.

use std::collections::{HashMap, HashSet};

/// Declared implications, closed transitively.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hierarchy {
    implied: HashMap<String, Vec<String>>,
}

impl Hierarchy {
    /// Builds the transitive closure of `edges` (scope -> directly implied scopes).
    pub(crate) fn new(edges: &HashMap<String, Vec<String>>) -> Hierarchy {
        let mut implied = HashMap::new();
        for start in edges.keys() {
            let mut seen: HashSet<&str> = HashSet::new();
            let mut stack: Vec<&str> = vec![start];
            let mut out = Vec::new();
            while let Some(s) = stack.pop() {
                for next in edges.get(s).into_iter().flatten() {
                    if next != start && seen.insert(next) {
                        out.push(next.clone());
                        stack.push(next);
                    }
                }
            }
            implied.insert(start.clone(), out);
        }
        Hierarchy { implied }
    }

    /// Every scope `scope` implies, itself excluded.
    pub(crate) fn implied_by(&self, scope: &str) -> &[String] {
        self.implied.get(scope).map_or(&[], Vec::as_slice)
    }

    /// Every scope with declared implications, and what it implies.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.implied.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// What `granted` amounts to under this hierarchy.
    ///
    /// A wildcard also brings in what the scopes it covers imply: if `notes:admin` implies
    /// `ops:audit`, holding `notes:*` holds `ops:audit` too. That runs to a fixed point,
    /// since an implied scope may itself be a wildcard.
    #[cfg(test)]
    pub(crate) fn grants<'a>(&'a self, granted: &'a [String]) -> Grants<'a> {
        let mut held: HashSet<&'a str> = HashSet::new();
        for g in granted {
            self.hold(g, &mut held);
        }
        let prefixes = loop {
            let before = held.len();
            let prefixes: Vec<&'a str> = held.iter().copied().filter_map(wildcard_prefix).collect();
            let reached: Vec<&'a str> = self
                .implied
                .keys()
                .map(String::as_str)
                .filter(|k| !held.contains(k) && prefixes.iter().any(|p| k.starts_with(p)))
                .collect();
            for k in reached {
                self.hold(k, &mut held);
            }
            if held.len() == before {
                break prefixes;
            }
        };
        Grants { held, prefixes }
    }

    #[cfg(test)]
    fn hold<'a>(&'a self, scope: &'a str, held: &mut HashSet<&'a str>) {
        held.insert(scope);
        held.extend(self.implied_by(scope).iter().map(String::as_str));
    }
}

/// `notes:` for the wildcard `notes:*`; a bare `*` is no wildcard.
pub(crate) fn wildcard_prefix(scope: &str) -> Option<&str> {
    scope.strip_suffix('*').filter(|p| p.ends_with(':'))
}

/// The scopes a caller effectively holds.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Grants<'a> {
    held: HashSet<&'a str>,
    prefixes: Vec<&'a str>,
}

#[cfg(test)]
impl Grants<'_> {
    /// Whether `scope` is held, directly, by implication, or by a wildcard.
    pub(crate) fn has(&self, scope: &str) -> bool {
        self.held.contains(scope) || self.prefixes.iter().any(|p| scope.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy(edges: &[(&str, &[&str])]) -> Hierarchy {
        let map = edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        Hierarchy::new(&map)
    }

    #[test]
    fn implication_is_transitive() {
        let h = hierarchy(&[("admin", &["write"]), ("write", &["read"])]);
        let granted = vec!["admin".to_string()];
        let g = h.grants(&granted);
        assert!(g.has("admin") && g.has("write") && g.has("read"));
        let granted = vec!["write".to_string()];
        assert!(!h.grants(&granted).has("admin"));
    }

    #[test]
    fn cycles_terminate() {
        let h = hierarchy(&[("a", &["b"]), ("b", &["a", "c"])]);
        let granted = vec!["a".to_string()];
        let g = h.grants(&granted);
        assert!(g.has("b") && g.has("c"));
        assert_eq!(h.implied_by("a").len(), 2);
    }

    #[test]
    fn wildcards_cover_their_prefix_only() {
        let h = hierarchy(&[("admin", &["notes:*"])]);
        let granted = vec!["admin".to_string()];
        let g = h.grants(&granted);
        assert!(g.has("notes:read") && g.has("notes:x:y"));
        assert!(!g.has("notesy:read") && !g.has("files:read"));
        let granted = vec!["*".to_string()];
        assert!(!h.grants(&granted).has("notes:read"), "bare * is literal");
    }

    #[test]
    fn wildcards_reach_through_the_hierarchy() {
        let h = hierarchy(&[("notes:admin", &["ops:audit"]), ("ops:audit", &["logs:*"])]);
        let granted = vec!["notes:*".to_string()];
        let g = h.grants(&granted);
        assert!(
            g.has("ops:audit"),
            "notes:* covers notes:admin, which implies ops:audit"
        );
        assert!(g.has("logs:today"), "and ops:audit implies logs:*");
        assert!(!g.has("files:read"));
    }
}
