//! The DPoP replay cache: which proofs (by the SHA-256 of their key's thumbprint and
//! `jti`) were used within the window, in two generations of hash sets per shard.
//!
//! A proof whose `iat` is within `window` of now passes the time check for at most
//! `2 × window`; the cache must remember it that long. Each shard keeps the ids first seen
//! in the current period (`2 × window` long) and in the one before, so an id is remembered
//! for between one and two periods, and a lookup is one hash probe under one shard's lock
//! (no background task, no eviction policy that could admit one proof and forget another).
//! Memory is bounded, and the cache never forgets early: a shard whose generation is full
//! refuses new ids until the next period ([`Use::Full`], a warning says to raise the
//! capacity), so a flood of proofs cannot push a captured one out to replay it.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};

/// Ids are SHA-256 digests: any eight of their bytes are already a uniform hash, so no keyed
/// hash is spent on them (a client could grind `jti`s to crowd a few buckets, but only
/// with a valid token and its key, and only up to the shard's bounded capacity). The first
/// byte picks the shard; the hash is bytes 8 to 15 (and the slice's length, which the
/// array's `Hash` writes first, a constant).
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0_u8; 8];
        let part = bytes.get(8..16).unwrap_or(bytes);
        let n = part.len().min(8);
        word[..n].copy_from_slice(&part[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }
}

type IdSet = HashSet<[u8; 32], BuildHasherDefault<DigestHasher>>;

/// How many shards: concurrent requests rarely wait for one another's lock.
const SHARDS: usize = 16;

/// Ids seen, in two generations per shard.
pub(super) struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    /// The length of a generation, in seconds.
    period: i64,
    /// The most ids one shard's generation holds.
    per_shard: usize,
}

/// What [`ReplayCache::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// The first use: remembered now.
    First,
    /// Seen before within the period.
    Replayed,
    /// The shard is full: not remembered, so not to be accepted.
    Full,
}

#[derive(Default)]
struct Shard {
    /// The period `current` belongs to (`now / period`).
    epoch: i64,
    current: IdSet,
    previous: IdSet,
}

impl ReplayCache {
    /// A cache remembering ids for at least `remember_secs`, about `capacity` of them in
    /// all (two generations of half as many).
    pub(super) fn new(remember_secs: u64, capacity: u64) -> ReplayCache {
        let per_shard = usize::try_from(capacity / 2 / SHARDS as u64)
            .unwrap_or(usize::MAX)
            .max(1);
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            period: i64::try_from(remember_secs.max(1)).unwrap_or(i64::MAX),
            per_shard,
        }
    }

    /// Whether `id` is seen for the first time (it is remembered from now on), at `now`
    /// (seconds since the epoch).
    pub(super) fn first_use(&self, id: [u8; 32], now: i64) -> Use {
        let shard = &self.shards[usize::from(id[0]) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let epoch = now.div_euclid(self.period);
        if epoch > shard.epoch {
            let previous = if epoch == shard.epoch + 1 {
                std::mem::take(&mut shard.current)
            } else {
                IdSet::default()
            };
            shard.previous = previous;
            shard.current.clear();
            shard.epoch = epoch;
        }
        if shard.previous.contains(&id) {
            return Use::Replayed;
        }
        if shard.current.len() >= self.per_shard {
            if shard.current.contains(&id) {
                return Use::Replayed;
            }
            warn_full(self.per_shard * SHARDS * 2);
            return Use::Full;
        }
        // One probe: `insert` says whether the id was there.
        if shard.current.insert(id) {
            Use::First
        } else {
            Use::Replayed
        }
    }

    /// How many ids are remembered.
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(PoisonError::into_inner);
                s.current.len() + s.previous.len()
            })
            .sum()
    }
}

/// Says the cache is full; out of line, off the path of a proof that is remembered.
#[cold]
#[inline(never)]
fn warn_full(capacity: usize) {
    tracing::warn!(
        target: "rmcp_authz::dpop",
        capacity,
        "the DPoP replay cache is full: proofs are refused until its next period; raise DpopOptions::replay_capacity"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn an_id_is_remembered_for_at_least_one_period() {
        let cache = ReplayCache::new(120, 1000);
        assert_eq!(cache.first_use(id(1), 1000), Use::First);
        assert_eq!(cache.first_use(id(1), 1000), Use::Replayed);
        // Still remembered in the next period, and forgotten after two.
        let period = 120;
        assert_eq!(cache.first_use(id(1), 1000 + period), Use::Replayed);
        assert_eq!(cache.first_use(id(1), 1000 + 3 * period), Use::First);
        // A clock going back never brings an id back.
        assert_eq!(cache.first_use(id(1), 1000), Use::Replayed);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_shard_refuses_new_ids_until_its_next_period_and_forgets_none() {
        let cache = ReplayCache::new(60, 2 * SHARDS as u64);
        // One id per shard and generation.
        let (a, b) = ([0_u8; 32], [SHARDS as u8; 32]);
        assert_eq!(cache.first_use(a, 0), Use::First);
        assert_eq!(cache.first_use(b, 0), Use::Full, "the shard is full");
        assert_eq!(cache.first_use(a, 0), Use::Replayed, "a is not forgotten");
        // The next period has room again, and still remembers a.
        assert_eq!(cache.first_use(b, 60), Use::First);
        assert_eq!(cache.first_use(a, 60), Use::Replayed);
    }
}
