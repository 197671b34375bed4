//! The revocation list of a [`CachedVerifier`](super::CachedVerifier): token ids (`jti`)
//! refused from now on, checked on every verification, cache hit or miss.
//!
//! This module owns [`Revocations`]: a shared handle on a list bounded in age
//! ([`CacheOptions::revocation_ttl`](super::CacheOptions::revocation_ttl)) and in size
//! ([`CacheOptions::max_revocations`](super::CacheOptions::max_revocations)), that costs
//! no lock to check while it is empty.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::clock::Clock;

/// Where revocation warnings go: the cache's target, as the cache's docs say.
const TRACE_TARGET: &str = "rmcp_authz::cache";

/// The revocation list of a [`CachedVerifier`](super::CachedVerifier): token ids (`jti`)
/// refused from now on.
///
/// A cheap handle (clone it, share it with whatever learns of revocations); every clone
/// sees and edits the same list. It is checked on every verification, cache hit or
/// miss, so a revocation takes effect on the very next request, and the revoked token's
/// cache entry is dropped when it is next presented.
///
/// The list is bounded: a `jti` is forgotten
/// [`CacheOptions::revocation_ttl`](super::CacheOptions::revocation_ttl) after it was
/// revoked (by then the token should have expired), and the list holds at most
/// [`CacheOptions::max_revocations`](super::CacheOptions::max_revocations) ids; past that,
/// the oldest revocation is forgotten (with a warning at target `rmcp_authz::cache`).
/// `jti`s are compared exactly, across every issuer the inner verifier trusts.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<RevocationList>,
}

struct RevocationList {
    /// `jti` -> when it is forgotten (unix seconds, on `clock`).
    jtis: RwLock<HashMap<String, i64>>,
    /// `jtis.len()`, stored under the write lock: with an empty list (the usual case), a
    /// check takes no lock at all.
    listed: AtomicUsize,
    ttl_secs: i64,
    max: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Revocations {
    /// Shows the count and the bounds, not the ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("len", &self.len())
            .field("ttl_secs", &self.inner.ttl_secs)
            .field("max", &self.inner.max)
            .finish()
    }
}

impl Revocations {
    /// An empty list whose ids are forgotten `ttl` after they are revoked, holding at most
    /// `max` of them, aged on `clock`.
    pub(super) fn new(ttl: Duration, max: usize, clock: Arc<dyn Clock>) -> Self {
        Revocations {
            inner: Arc::new(RevocationList {
                jtis: RwLock::new(HashMap::new()),
                listed: AtomicUsize::new(0),
                ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
                max,
                clock,
            }),
        }
    }

    /// Refuses tokens whose `jti` is `jti` from now on (for the revocation TTL).
    /// Revoking an id again restarts its TTL.
    pub fn revoke_jti(&self, jti: &str) {
        let list = &self.inner;
        if list.max == 0 {
            tracing::warn!(
                target: TRACE_TARGET,
                "revocation ignored: max_revocations is 0"
            );
            return;
        }
        let now = list.clock.now_unix();
        let until = now.saturating_add(list.ttl_secs);
        let mut jtis = list.jtis.write().unwrap_or_else(PoisonError::into_inner);
        if !jtis.contains_key(jti) && jtis.len() >= list.max {
            jtis.retain(|_, forget_at| *forget_at > now);
            if jtis.len() >= list.max {
                let oldest = jtis
                    .iter()
                    .min_by_key(|(_, forget_at)| **forget_at)
                    .map(|(id, _)| id.clone());
                if let Some(oldest) = oldest {
                    jtis.remove(&oldest);
                    tracing::warn!(
                        target: TRACE_TARGET,
                        max_revocations = list.max,
                        "revocation list full: the oldest revocation was forgotten"
                    );
                }
            }
        }
        jtis.insert(jti.to_owned(), until);
        list.listed.store(jtis.len(), Ordering::Release);
    }

    /// Takes `jti` off the list. Returns whether it was on it.
    pub fn unrevoke(&self, jti: &str) -> bool {
        let mut jtis = self
            .inner
            .jtis
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let removed = jtis.remove(jti).is_some();
        self.inner.listed.store(jtis.len(), Ordering::Release);
        removed
    }

    /// Empties the list.
    pub fn clear(&self) {
        let mut jtis = self
            .inner
            .jtis
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        jtis.clear();
        self.inner.listed.store(0, Ordering::Release);
    }

    /// Whether tokens with this `jti` are refused now.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.is_revoked_at(jti, self.inner.clock.now_unix())
    }

    /// Whether tokens with this `jti` are refused at `now` (unix seconds).
    pub(super) fn is_revoked_at(&self, jti: &str, now: i64) -> bool {
        if self.inner.listed.load(Ordering::Acquire) == 0 {
            return false;
        }
        let jtis = self
            .inner
            .jtis
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        jtis.get(jti).is_some_and(|forget_at| *forget_at > now)
    }

    /// How many ids are on the list (including any past their TTL not yet dropped).
    pub fn len(&self) -> usize {
        self.inner
            .jtis
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const T0: i64 = 1_750_000_000;

    #[test]
    fn revocations_expire_and_are_bounded() {
        let clock = Arc::new(ManualClock::new(T0));
        let r = Revocations::new(Duration::from_secs(3600), 3, clock.clone());
        r.revoke_jti("a");
        clock.advance(Duration::from_secs(10));
        r.revoke_jti("b");
        r.revoke_jti("c");
        assert_eq!(r.len(), 3);
        // Full: the oldest ("a") goes.
        r.revoke_jti("d");
        assert_eq!(r.len(), 3);
        assert!(!r.is_revoked("a"));
        assert!(r.is_revoked("b") && r.is_revoked("c") && r.is_revoked("d"));
        // After the TTL, ids are forgotten, and dropped when room is needed.
        clock.advance(Duration::from_secs(3600));
        assert!(!r.is_revoked("b"));
        r.revoke_jti("e");
        assert_eq!(r.len(), 1);
        assert!(r.is_revoked("e"));
        r.clear();
        assert!(r.is_empty());
    }
}
