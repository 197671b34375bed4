//! The compiled form of a policy's scopes, which makes a decision a few bit operations.
//!
//! [`PolicyBuilder::build`](super::PolicyBuilder::build) interns every scope the policy
//! names (in rules and in the hierarchy) into a [`ScopeTable`]: dense indices in sorted
//! order, each scope's transitive implications as indices, and for each wildcard
//! (`notes:*`) the index range of the scopes it covers (scopes sharing a prefix are
//! contiguous in sorted order). Each rule's [`ScopeExpr`] becomes a [`Requirement`]: a
//! disjunction of terms, each a handful of (word, mask) pairs, or an index tree when
//! that disjunction would grow too large. What a caller holds under the policy is a
//! [`GrantSet`], one bit per interned scope, computed once per [`Principal`] and policy
//! and cached in the principal ([`CachedGrants`]).
//!
//! The grant set follows [`hierarchy`](super::hierarchy) exactly: a granted scope brings
//! what it implies, a wildcard (granted, or implied) brings every interned scope it
//! covers and what those imply, to a fixed point. Granted scopes the policy never names
//! matter only as wildcards: a requirement only ever asks about named scopes.
//!
//! [`Principal`]: crate::principal::Principal

use std::collections::HashMap;
use std::sync::OnceLock;

use super::hierarchy::{Hierarchy, wildcard_prefix};
use super::scope::ScopeExpr;
use crate::principal::CachedGrants;

/// Words of a [`GrantSet`] kept inline: policies of up to 256 scopes need no allocation.
const INLINE_WORDS: usize = 4;

/// The most terms a requirement's disjunctive form may have before it is kept as a tree.
const MAX_TERMS: usize = 32;

/// Every scope a policy names, interned, with its implications and wildcard coverage.
#[derive(Debug)]
pub(crate) struct ScopeTable {
    /// Sorted, without repeats; a scope's index is its position here.
    names: Box<[Box<str>]>,
    index: HashMap<Box<str>, u32>,
    /// What each scope implies, transitively, itself excluded.
    implied: Box<[Box<[u32]>]>,
    /// For a wildcard, the index range `lo..hi` of the scopes it covers (itself included).
    covers: Box<[Option<(u32, u32)>]>,
    /// The wildcards, as a bit set.
    wildcards: Box<[u64]>,
}

impl ScopeTable {
    /// Interns `names` (every scope of every rule) and the hierarchy's scopes.
    pub(crate) fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        hierarchy: &'a Hierarchy,
    ) -> ScopeTable {
        let mut all: Vec<&str> = names.into_iter().collect();
        for (scope, implied) in hierarchy.iter() {
            all.push(scope);
            all.extend(implied.iter().map(String::as_str));
        }
        all.sort_unstable();
        all.dedup();
        let names: Box<[Box<str>]> = all.iter().map(|s| Box::from(*s)).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), index_of(i)))
            .collect::<HashMap<_, _>>();
        let implied = names
            .iter()
            .map(|s| {
                hierarchy
                    .implied_by(s)
                    .iter()
                    .filter_map(|t| index.get(t.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut table = ScopeTable {
            index,
            implied,
            covers: Box::default(),
            wildcards: vec![0; words_for(names.len())].into_boxed_slice(),
            names,
        };
        let covers: Box<[Option<(u32, u32)>]> = table
            .names
            .iter()
            .map(|s| wildcard_prefix(s).map(|p| table.prefix_range(p)))
            .collect();
        for (i, cover) in covers.iter().enumerate() {
            if cover.is_some() {
                table.wildcards[i / 64] |= 1 << (i % 64);
            }
        }
        table.covers = covers;
        table
    }

    /// The interned scopes; a scope's index is its position.
    pub(crate) fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// The index of `scope`, if the policy names it.
    pub(crate) fn index(&self, scope: &str) -> Option<u32> {
        self.index.get(scope).copied()
    }

    /// The number of 64-bit words a grant set over these scopes needs.
    fn words(&self) -> usize {
        self.wildcards.len()
    }

    /// The index range of the interned scopes that start with `prefix`.
    fn prefix_range(&self, prefix: &str) -> (u32, u32) {
        let lo = self.names.partition_point(|n| &**n < prefix);
        let len = self.names[lo..].partition_point(|n| n.starts_with(prefix));
        (index_of(lo), index_of(lo + len))
    }

    /// What `granted` amounts to: the interned scopes held directly, by implication or
    /// under a wildcard.
    pub(crate) fn grants(&self, granted: &[String]) -> GrantSet {
        let mut held = GrantSet::empty(self.words());
        let mut wildcard = false;
        for scope in granted {
            if let Some(i) = self.index(scope) {
                held.insert(i);
                for &j in self.implied(i) {
                    held.insert(j);
                }
            } else if let Some(prefix) = wildcard_prefix(scope) {
                // A wildcard the policy never names: only what it covers matters.
                let (lo, hi) = self.prefix_range(prefix);
                for j in lo..hi {
                    held.insert(j);
                }
                wildcard |= lo < hi;
            }
        }
        wildcard |= held
            .words()
            .iter()
            .zip(self.wildcards.iter())
            .any(|(h, w)| h & w != 0);
        if wildcard {
            // Covered scopes bring what they imply, and implied wildcards what they
            // cover: repeat until nothing changes.
            loop {
                let mut changed = false;
                for w in 0..self.words() {
                    let mut bits = held.words()[w];
                    while bits != 0 {
                        let i = index_of(w * 64) + bits.trailing_zeros();
                        bits &= bits - 1;
                        for &j in self.implied(i) {
                            changed |= held.insert(j);
                        }
                        if let Some((lo, hi)) = self.covers[i as usize] {
                            for j in lo..hi {
                                changed |= held.insert(j);
                            }
                        }
                    }
                }
                if !changed {
                    break;
                }
            }
        }
        held
    }

    /// [`ScopeTable::grants`], to keep in a principal, for the policy with id `policy`.
    pub(crate) fn cached_grants(&self, granted: &[String], policy: u64) -> CachedGrants {
        let held = self.grants(granted);
        CachedGrants {
            policy,
            words: held.words()[..self.words()].into(),
            names: OnceLock::new(),
        }
    }

    fn implied(&self, i: u32) -> &[u32] {
        &self.implied[i as usize]
    }
}

fn index_of(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn words_for(scopes: usize) -> usize {
    scopes.div_ceil(64)
}

/// What a caller holds under one policy: bit `i` is interned scope `i`.
#[derive(Debug, Clone)]
pub(crate) struct GrantSet {
    inline: [u64; INLINE_WORDS],
    /// Used instead of `inline` when the policy has more scopes than fit there.
    heap: Vec<u64>,
}

impl GrantSet {
    fn empty(words: usize) -> GrantSet {
        GrantSet {
            inline: [0; INLINE_WORDS],
            heap: if words > INLINE_WORDS {
                vec![0; words]
            } else {
                Vec::new()
            },
        }
    }

    /// The bits, as words.
    pub(crate) fn words(&self) -> &[u64] {
        if self.heap.is_empty() {
            &self.inline
        } else {
            &self.heap
        }
    }

    /// Sets bit `i`; true when it was not set.
    fn insert(&mut self, i: u32) -> bool {
        let words = if self.heap.is_empty() {
            &mut self.inline[..]
        } else {
            &mut self.heap[..]
        };
        let (w, bit) = (i as usize / 64, 1u64 << (i % 64));
        match words.get_mut(w) {
            Some(word) if *word & bit == 0 => {
                *word |= bit;
                true
            }
            _ => false,
        }
    }
}

/// What a caller holds under one policy, cached in its principal or computed for one
/// decision.
#[derive(Debug)]
pub(crate) enum Held<'a> {
    /// The grant set a principal keeps.
    Cached(&'a CachedGrants),
    /// A grant set computed for this decision.
    Computed(GrantSet),
}

impl Held<'_> {
    /// The bits, as words.
    #[inline]
    pub(crate) fn words(&self) -> &[u64] {
        match self {
            Held::Cached(cached) => &cached.words,
            Held::Computed(set) => set.words(),
        }
    }
}

/// Whether bit `i` of `words` is set.
pub(crate) fn holds(words: &[u64], i: u32) -> bool {
    words
        .get(i as usize / 64)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// One way to meet a requirement: (word, mask) pairs, every bit of which must be held.
type Term = Box<[(u32, u64)]>;

/// A rule's scope requirement over interned scopes.
#[derive(Debug, Clone)]
pub(crate) enum Requirement {
    /// Met when every (word, mask) pair of some term is held.
    AnyTerm(Box<[Term]>),
    /// The expression as a tree, when its disjunctive form has too many terms.
    Tree(Node),
}

/// An expression over interned scopes.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// One scope (`u32::MAX` for a scope not interned, never held).
    Scope(u32),
    /// Every part.
    All(Box<[Node]>),
    /// Some part.
    Any(Box<[Node]>),
}

impl Requirement {
    /// Compiles `expr` against `table`.
    pub(crate) fn new(expr: &ScopeExpr, table: &ScopeTable) -> Requirement {
        match terms(expr, table) {
            Some(terms) => Requirement::AnyTerm(
                terms
                    .into_iter()
                    .map(|term| {
                        let mut pairs: Vec<(u32, u64)> = Vec::new();
                        for i in term {
                            let (w, bit) = (i / 64, 1u64 << (i % 64));
                            match pairs.last_mut() {
                                Some((last, mask)) if *last == w => *mask |= bit,
                                _ => pairs.push((w, bit)),
                            }
                        }
                        pairs.into_boxed_slice()
                    })
                    .collect(),
            ),
            None => Requirement::Tree(Node::new(expr, table)),
        }
    }

    /// Whether a caller holding `held` meets the requirement.
    #[inline]
    pub(crate) fn is_met(&self, held: &[u64]) -> bool {
        match self {
            Requirement::AnyTerm(terms) => terms.iter().any(|term| {
                term.iter()
                    .all(|&(w, mask)| held.get(w as usize).is_some_and(|word| word & mask == mask))
            }),
            Requirement::Tree(node) => node.is_met(held),
        }
    }
}

impl Node {
    fn new(expr: &ScopeExpr, table: &ScopeTable) -> Node {
        match expr {
            ScopeExpr::Scope(s) => Node::Scope(table.index(s).unwrap_or(u32::MAX)),
            ScopeExpr::AllOf(parts) => {
                Node::All(parts.iter().map(|p| Node::new(p, table)).collect())
            }
            ScopeExpr::AnyOf(parts) => {
                Node::Any(parts.iter().map(|p| Node::new(p, table)).collect())
            }
        }
    }

    fn is_met(&self, held: &[u64]) -> bool {
        match self {
            Node::Scope(i) => holds(held, *i),
            Node::All(parts) => parts.iter().all(|p| p.is_met(held)),
            Node::Any(parts) => parts.iter().any(|p| p.is_met(held)),
        }
    }
}

/// `expr` in disjunctive form: terms of sorted indices, one of which must be held in
/// full; `None` when that takes more than [`MAX_TERMS`] terms or a scope is not interned.
fn terms(expr: &ScopeExpr, table: &ScopeTable) -> Option<Vec<Vec<u32>>> {
    let out = match expr {
        ScopeExpr::Scope(s) => vec![vec![table.index(s)?]],
        ScopeExpr::AllOf(parts) => {
            let mut acc = vec![Vec::new()];
            for part in parts {
                let part = terms(part, table)?;
                let mut next = Vec::with_capacity(acc.len() * part.len());
                for a in &acc {
                    for b in &part {
                        let mut term: Vec<u32> = a.iter().chain(b).copied().collect();
                        term.sort_unstable();
                        term.dedup();
                        next.push(term);
                    }
                }
                acc = simplify(next)?;
            }
            acc
        }
        ScopeExpr::AnyOf(parts) => {
            let mut acc = Vec::new();
            for part in parts {
                acc.extend(terms(part, table)?);
            }
            acc
        }
    };
    simplify(out)
}

/// Drops repeated terms and terms that hold another term (they add nothing).
fn simplify(mut terms: Vec<Vec<u32>>) -> Option<Vec<Vec<u32>>> {
    terms.sort_unstable_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    terms.dedup();
    let mut kept: Vec<Vec<u32>> = Vec::with_capacity(terms.len());
    for term in terms {
        if !kept
            .iter()
            .any(|k| k.iter().all(|i| term.binary_search(i).is_ok()))
        {
            kept.push(term);
        }
    }
    (kept.len() <= MAX_TERMS).then_some(kept)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::policy::{Decision, DenyReason, Operation, Policy, all_of, any_of};

    /// Scopes rules and hierarchies use: plain, nested, wildcards, and stars that are
    /// not wildcards (`*`, `a*`).
    const NAMED: [&str; 12] = [
        "a:x", "a:y", "a:b:z", "b:x", "b:y", "c:x", "top", "a:*", "b:*", "a:b:*", "*", "a*",
    ];
    /// Scopes only tokens carry: the policy never names them.
    const UNNAMED: [&str; 5] = ["c:*", "a:q", "z:*", "zz", "a:b:q:*"];

    fn hierarchy(edges: &[(String, String)]) -> (HashMap<String, Vec<String>>, Hierarchy) {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (from, to) in edges {
            map.entry(from.clone()).or_default().push(to.clone());
        }
        let h = Hierarchy::new(&map);
        (map, h)
    }

    /// The string-based evaluation decisions used before compilation: the reference.
    fn reference(h: &Hierarchy, expr: &ScopeExpr, granted: &[String]) -> Decision {
        let grants = h.grants(granted);
        let has = |s: &str| grants.has(s);
        if expr.is_met_by(&has) {
            return Decision::Allow;
        }
        let required = expr.scopes_to_request(&has);
        let missing = required.iter().filter(|s| !has(s)).cloned().collect();
        Decision::Deny(crate::policy::Denial::new(
            "tools/call t".to_owned(),
            DenyReason::InsufficientScope { required, missing },
        ))
    }

    fn named() -> impl Strategy<Value = String> {
        proptest::sample::select(&NAMED[..]).prop_map(str::to_owned)
    }

    fn expr() -> impl Strategy<Value = ScopeExpr> {
        let leaf = prop_oneof![
            8 => named().prop_map(ScopeExpr::Scope),
            1 => Just(ScopeExpr::authenticated()),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(ScopeExpr::AllOf),
                proptest::collection::vec(inner, 1..5).prop_map(ScopeExpr::AnyOf),
            ]
        })
    }

    fn granted() -> impl Strategy<Value = Vec<String>> {
        let scope = prop_oneof![
            3 => named(),
            1 => proptest::sample::select(&UNNAMED[..]).prop_map(str::to_owned),
        ];
        proptest::collection::vec(scope, 0..5)
    }

    fn edges() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((named(), named()), 0..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn compiled_decisions_equal_the_string_evaluation(
            edges in edges(),
            expr in expr(),
            other in expr(),
            granted in granted(),
        ) {
            let (map, h) = hierarchy(&edges);
            let mut builder = Policy::builder().tool("t", expr.clone()).tool("u", other);
            for (from, to) in &map {
                builder = builder.implies(from.clone(), to.clone());
            }
            let policy = builder.build().unwrap();
            prop_assert_eq!(
                policy.decide_for(&granted, None, Operation::CallTool("t")),
                reference(&h, &expr, &granted)
            );
        }

        #[test]
        fn grant_sets_and_both_requirement_forms_equal_the_reference(
            edges in edges(),
            expr in expr(),
            granted in granted(),
        ) {
            let (_, h) = hierarchy(&edges);
            let table = ScopeTable::new(expr.scopes(), &h);
            let held = table.grants(&granted);
            let grants = h.grants(&granted);
            for name in table.names.iter() {
                let i = table.index(name).unwrap();
                prop_assert_eq!(holds(held.words(), i), grants.has(name), "{}", name);
            }
            let expected = expr.is_met_by(&|s: &str| grants.has(s));
            prop_assert_eq!(Requirement::new(&expr, &table).is_met(held.words()), expected);
            let tree = Requirement::Tree(Node::new(&expr, &table));
            prop_assert_eq!(tree.is_met(held.words()), expected);
            let cached = table.cached_grants(&granted, 7);
            prop_assert_eq!(Requirement::new(&expr, &table).is_met(&cached.words), expected);
        }
    }

    #[test]
    fn wide_requirements_are_kept_as_trees() {
        let (_, h) = hierarchy(&[]);
        let choices = |w: &str| any_of([format!("{w}:1"), format!("{w}:2"), format!("{w}:3")]);
        let wide = all_of(["a", "b", "c", "d", "e", "f"].map(choices));
        let table = ScopeTable::new(wide.scopes(), &h);
        let requirement = Requirement::new(&wide, &table);
        assert!(matches!(requirement, Requirement::Tree(_)), "3^6 terms");
        let some: Vec<String> = ["a:1", "b:2", "c:3", "d:1", "e:2", "f:3"]
            .map(str::to_owned)
            .to_vec();
        assert!(requirement.is_met(table.grants(&some).words()));
        assert!(!requirement.is_met(table.grants(&some[1..]).words()));
        let narrow = any_of([all_of(["a:1", "b:1"]), "a:1".into(), "a:1".into()]);
        match Requirement::new(&narrow, &table) {
            Requirement::AnyTerm(terms) => assert_eq!(terms.len(), 1, "absorbed: {terms:?}"),
            Requirement::Tree(_) => panic!("two terms fit"),
        }
    }

    #[test]
    fn large_policies_hold_their_grants_outside_the_inline_words() {
        // 300 scopes, each implying the next: more than the inline words hold.
        let mut builder = Policy::builder();
        for i in 0..300 {
            builder = builder.implies(format!("s:{i:03}"), [format!("s:{:03}", i + 1)]);
        }
        let policy = builder
            .tool("last", "s:300")
            .tool("first", "s:000")
            .tool("both", all_of(["s:150", "x:1"]))
            .build()
            .unwrap();
        let at = |s: &str| vec![s.to_owned()];
        assert!(
            policy
                .decide_for(&at("s:000"), None, Operation::CallTool("last"))
                .is_allowed()
        );
        assert!(
            policy
                .decide_for(&at("s:*"), None, Operation::CallTool("first"))
                .is_allowed()
        );
        assert!(
            !policy
                .decide_for(&at("s:001"), None, Operation::CallTool("first"))
                .is_allowed()
        );
        let d = policy.decide_for(&at("s:100"), None, Operation::CallTool("both"));
        assert_eq!(
            d.denial().unwrap().reason(),
            &DenyReason::InsufficientScope {
                required: vec!["s:150".into(), "x:1".into()],
                missing: vec!["x:1".into()],
            }
        );
    }
}
