//! The checked proof headers, by their base64url text: a client sends the same header (its
//! key) with every proof, so its key is parsed and thumbprinted once. A read is one hash
//! lookup under a shared lock; the cache is bounded in bytes, and starts afresh when full
//! (a header is only ever checked again, never trusted unchecked).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// The headers kept, by their text, and the bytes they take.
type Kept<T> = (HashMap<Box<str>, Arc<T>>, usize);

/// Headers checked, with the bytes they take.
pub(super) struct HeaderCache<T> {
    inner: RwLock<Kept<T>>,
    budget: usize,
    overhead: usize,
}

impl<T> HeaderCache<T> {
    /// A cache of at most `budget` bytes, counting each entry as its text and `overhead`.
    pub(super) fn new(budget: usize, overhead: usize) -> HeaderCache<T> {
        HeaderCache {
            inner: RwLock::new((HashMap::new(), 0)),
            budget,
            overhead,
        }
    }

    /// The header checked as `text`, if kept.
    pub(super) fn get(&self, text: &str) -> Option<Arc<T>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.0.get(text).cloned()
    }

    /// Keeps `header`, checked as `text`.
    pub(super) fn insert(&self, text: &str, header: Arc<T>) {
        let cost = text.len() + self.overhead;
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let (map, bytes) = &mut *inner;
        if *bytes + cost > self.budget {
            map.clear();
            *bytes = 0;
        }
        if map.insert(text.into(), header).is_none() {
            *bytes += cost;
        }
    }

    /// How many headers are kept.
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
    fn the_cache_keeps_headers_within_its_budget() {
        let cache = HeaderCache::new(100, 10);
        cache.insert(&"a".repeat(40), Arc::new(1));
        cache.insert(&"b".repeat(40), Arc::new(2));
        assert_eq!(cache.get(&"a".repeat(40)).as_deref(), Some(&1));
        assert_eq!(cache.len(), 2);
        // A third would pass the budget: the cache starts afresh with it.
        cache.insert(&"c".repeat(40), Arc::new(3));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&"a".repeat(40)).is_none());
        assert_eq!(cache.get(&"c".repeat(40)).as_deref(), Some(&3));
    }
}
