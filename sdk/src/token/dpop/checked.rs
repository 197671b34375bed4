//! What the verifier checked once and need not check again, by the text it was checked
//! from: the proof headers (a client sends the same header, its key, with every proof, so
//! its key is parsed and thumbprinted once) and the access tokens whose SHA-256 an `ath`
//! claim was found to be (a client sends the same token with every proof until it
//! expires, so it is hashed once).
//!
//! A read is one hash lookup under a shared lock. The cache is bounded in bytes and starts
//! afresh when full: an entry only ever spares a check that would pass, so a client that
//! floods it (with keys and tokens of its own) only makes others check again.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// The entries kept, by their text, and the bytes they take.
type Kept<T> = (HashMap<Box<str>, Arc<T>>, usize);

/// Entries checked, by their text, within a budget of bytes.
pub(super) struct Checked<T: ?Sized> {
    inner: RwLock<Kept<T>>,
    budget: usize,
    overhead: usize,
}

impl<T: ?Sized> Checked<T> {
    /// A cache of at most `budget` bytes, counting each entry as its text, `overhead`, and
    /// what [`insert`](Checked::insert) adds.
    pub(super) fn new(budget: usize, overhead: usize) -> Checked<T> {
        Checked {
            inner: RwLock::new((HashMap::new(), 0)),
            budget,
            overhead,
        }
    }

    /// The entry checked as `text`, if kept.
    pub(super) fn get(&self, text: &str) -> Option<Arc<T>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.0.get(text).cloned()
    }

    /// Whether an entry checked as `text` is kept and `matches`.
    pub(super) fn holds(&self, text: &str, matches: impl FnOnce(&T) -> bool) -> bool {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.0.get(text).is_some_and(|kept| matches(kept))
    }

    /// Keeps `value`, checked as `text`, which takes `size` bytes beyond its text.
    pub(super) fn insert(&self, text: &str, value: Arc<T>, size: usize) {
        let cost = text.len() + size + self.overhead;
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let (map, bytes) = &mut *inner;
        if *bytes + cost > self.budget {
            map.clear();
            *bytes = 0;
        }
        if map.insert(text.into(), value).is_none() {
            *bytes += cost;
        }
    }

    /// How many entries are kept.
    pub(super) fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_entries_within_its_budget() {
        let cache = Checked::new(100, 10);
        cache.insert(&"a".repeat(40), Arc::new(1), 0);
        cache.insert(&"b".repeat(40), Arc::new(2), 0);
        assert_eq!(cache.get(&"a".repeat(40)).as_deref(), Some(&1));
        assert!(cache.holds(&"b".repeat(40), |kept| *kept == 2));
        assert!(!cache.holds(&"b".repeat(40), |kept| *kept == 3));
        assert_eq!(cache.len(), 2);
        // A third would pass the budget: the cache starts afresh with it.
        cache.insert(&"c".repeat(40), Arc::new(3), 0);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&"a".repeat(40)).is_none());
        assert_eq!(cache.get(&"c".repeat(40)).as_deref(), Some(&3));
        // An entry's own size counts.
        let tokens: Checked<str> = Checked::new(100, 10);
        tokens.insert("x", Arc::from("a token"), 95);
        tokens.insert("y", Arc::from("another"), 7);
        assert!(tokens.holds("y", |kept| kept == "another"));
        assert!(!tokens.holds("x", |kept| kept == "a token"));
    }
}
