//! The revocation list of a [`CachedVerifier`](super::CachedVerifier): token ids (`jti`)
//! and subjects (`sub`) refused from now on, checked on every verification, cache hit or
//! miss.
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
/// refused from now on, and subjects (`sub`) all of whose tokens are.
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
/// `jti`s and subjects are compared exactly, across every issuer the inner verifier
/// trusts. With feature `postgres`, `SharedRevocations` keeps the list equal to a
/// database's, shared by every replica.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<RevocationList>,
}

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationKind {
    /// One token, by its `jti`.
    TokenId,
    /// Every token of a subject (`sub`).
    Subject,
}

impl RevocationKind {
    /// `jti` or `sub`, as the claim is named.
    pub fn claim(self) -> &'static str {
        match self {
            RevocationKind::TokenId => "jti",
            RevocationKind::Subject => "sub",
        }
    }
}

/// The two lists: value -> when it is forgotten (unix seconds, on `clock`).
#[derive(Default)]
pub(crate) struct Lists {
    pub(crate) jtis: HashMap<String, i64>,
    pub(crate) subjects: HashMap<String, i64>,
}

impl Lists {
    fn len(&self) -> usize {
        self.jtis.len() + self.subjects.len()
    }

    fn of(&mut self, kind: RevocationKind) -> &mut HashMap<String, i64> {
        match kind {
            RevocationKind::TokenId => &mut self.jtis,
            RevocationKind::Subject => &mut self.subjects,
        }
    }
}

struct RevocationList {
    lists: RwLock<Lists>,
    /// How many ids and subjects are listed, stored under the write lock: with an empty
    /// list (the usual case), a check takes no lock at all.
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
                lists: RwLock::new(Lists::default()),
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
        self.revoke(RevocationKind::TokenId, jti);
    }

    /// Refuses every token whose `sub` is `subject` from now on (for the revocation TTL),
    /// whenever it was issued: lift it with [`Revocations::unrevoke_subject`].
    pub fn revoke_subject(&self, subject: &str) {
        self.revoke(RevocationKind::Subject, subject);
    }

    fn revoke(&self, kind: RevocationKind, value: &str) {
        let until = self
            .inner
            .clock
            .now_unix()
            .saturating_add(self.inner.ttl_secs);
        self.revoke_until(kind, value, until);
    }

    /// Lists `value` until `until` (unix seconds), within the size bound.
    pub(crate) fn revoke_until(&self, kind: RevocationKind, value: &str, until: i64) {
        let list = &self.inner;
        if list.max == 0 {
            tracing::warn!(
                target: TRACE_TARGET,
                "revocation ignored: max_revocations is 0"
            );
            return;
        }
        let now = list.clock.now_unix();
        let mut lists = list.lists.write().unwrap_or_else(PoisonError::into_inner);
        if !lists.of(kind).contains_key(value) && lists.len() >= list.max {
            lists.jtis.retain(|_, forget_at| *forget_at > now);
            lists.subjects.retain(|_, forget_at| *forget_at > now);
            if lists.len() >= list.max {
                let oldest = [RevocationKind::TokenId, RevocationKind::Subject]
                    .into_iter()
                    .flat_map(|k| {
                        let map = match k {
                            RevocationKind::TokenId => &lists.jtis,
                            RevocationKind::Subject => &lists.subjects,
                        };
                        map.iter().map(move |(id, at)| (*at, k, id.clone()))
                    })
                    .min_by_key(|(at, _, _)| *at);
                if let Some((_, k, oldest)) = oldest {
                    lists.of(k).remove(&oldest);
                    tracing::warn!(
                        target: TRACE_TARGET,
                        max_revocations = list.max,
                        "revocation list full: the oldest revocation was forgotten"
                    );
                }
            }
        }
        lists.of(kind).insert(value.to_owned(), until);
        list.listed.store(lists.len(), Ordering::Release);
    }

    /// Replaces the whole list with `lists` (a reload from a shared store).
    #[cfg(feature = "postgres")]
    pub(crate) fn replace(&self, lists: Lists) {
        let mut current = self
            .inner
            .lists
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *current = lists;
        self.inner.listed.store(current.len(), Ordering::Release);
    }

    /// Takes `value` off the list of `kind`. Returns whether it was on it.
    pub(crate) fn remove(&self, kind: RevocationKind, value: &str) -> bool {
        let mut lists = self
            .inner
            .lists
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let removed = lists.of(kind).remove(value).is_some();
        self.inner.listed.store(lists.len(), Ordering::Release);
        removed
    }

    /// Takes `subject` off the list. Returns whether it was on it.
    pub fn unrevoke_subject(&self, subject: &str) -> bool {
        self.remove(RevocationKind::Subject, subject)
    }

    /// Takes `jti` off the list. Returns whether it was on it.
    pub fn unrevoke(&self, jti: &str) -> bool {
        self.remove(RevocationKind::TokenId, jti)
    }

    /// Empties the list.
    pub fn clear(&self) {
        let mut lists = self
            .inner
            .lists
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        lists.jtis.clear();
        lists.subjects.clear();
        self.inner.listed.store(0, Ordering::Release);
    }

    /// Whether tokens with this `jti` are refused now.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.is_revoked_at(jti, self.inner.clock.now_unix())
    }

    /// Whether every token of `subject` is refused now.
    pub fn is_subject_revoked(&self, subject: &str) -> bool {
        self.listed_at(
            RevocationKind::Subject,
            subject,
            self.inner.clock.now_unix(),
        )
    }

    /// Whether tokens with this `jti` are refused at `now` (unix seconds).
    pub(super) fn is_revoked_at(&self, jti: &str, now: i64) -> bool {
        self.listed_at(RevocationKind::TokenId, jti, now)
    }

    /// Whether `value` is listed as `kind` at `now` (unix seconds).
    pub(super) fn listed_at(&self, kind: RevocationKind, value: &str, now: i64) -> bool {
        if self.inner.listed.load(Ordering::Acquire) == 0 {
            return false;
        }
        let lists = self
            .inner
            .lists
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let map = match kind {
            RevocationKind::TokenId => &lists.jtis,
            RevocationKind::Subject => &lists.subjects,
        };
        map.get(value).is_some_and(|forget_at| *forget_at > now)
    }

    /// How many ids and subjects are on the list (including any past their TTL not yet
    /// dropped).
    pub fn len(&self) -> usize {
        self.inner
            .lists
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The most ids and subjects the list holds.
    #[cfg(feature = "postgres")]
    pub(crate) fn capacity(&self) -> usize {
        self.inner.max
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
