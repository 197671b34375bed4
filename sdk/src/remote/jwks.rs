//! [`RemoteJwks`]: an issuer's JWK Set, fetched from its `jwks_uri` and followed as it
//! rotates.
//!
//! The read path is lock-free: verifiers load the current snapshot (an `Arc` swapped
//! atomically) and never wait for a fetch while it holds their key. The set is fetched
//! again:
//! - when it is older than its maximum age (`Cache-Control: max-age` from the server,
//!   bounded to [`RemoteJwksOptions::min_age`]..=[`RemoteJwksOptions::max_age`], else
//!   [`RemoteJwksOptions::default_age`]): in the background (one task at a time), while
//!   verifications keep using the current set; only a set past
//!   [`RemoteJwksOptions::stale_for`] (or none yet) makes a verification wait for a fetch;
//! - when a token names a `kid` the set does not have, at most once per
//!   [`RemoteJwksOptions::cooldown`], however many such tokens arrive: one caller fetches
//!   (single flight), and the rest are refused at once, their `kid`s remembered until the
//!   cooldown ends (a negative cache), so a flood of forged `kid`s is a flood of cheap
//!   refusals, not of fetches.
//!
//! A fetch that fails (the issuer down, slow, answering garbage, too much, or keys that
//! fail validation) changes nothing: the previous keys stay in use for up to
//! [`RemoteJwksOptions::stale_for`] after they were due, and the next attempt waits for
//! the cooldown. Keys are checked exactly like static keys (algorithm binding, `use`,
//! duplicate `kid`s, sizes, no private material); one bad key refuses the whole set.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;

use super::fetch::{FetchError, FetchOptions, Fetcher};
use crate::token::{AuthError, JwtVerifier, JwtVerifierBuilder, KeyError, KeySet, KeySource};

/// How a [`RemoteJwks`] refreshes, and how long it trusts what it has.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteJwksOptions {
    pub(crate) fetch: FetchOptions,
    pub(crate) default_age: Duration,
    pub(crate) min_age: Duration,
    pub(crate) max_age: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) stale_for: Duration,
}

impl Default for RemoteJwksOptions {
    fn default() -> Self {
        RemoteJwksOptions {
            fetch: FetchOptions::default(),
            default_age: Duration::from_secs(600),
            min_age: Duration::from_secs(60),
            max_age: Duration::from_secs(86_400),
            cooldown: Duration::from_secs(30),
            stale_for: Duration::from_secs(3600),
        }
    }
}

impl RemoteJwksOptions {
    /// Limits on each fetch (HTTPS, time, size).
    #[must_use]
    pub fn fetch(mut self, fetch: FetchOptions) -> Self {
        self.fetch = fetch;
        self
    }

    /// How long a fetched set is used when the server sends no `max-age` (default 10 min).
    #[must_use]
    pub fn default_age(mut self, default_age: Duration) -> Self {
        self.default_age = default_age;
        self
    }

    /// The shortest `max-age` honoured (default 1 min): a server asking for less is
    /// refreshed this often.
    #[must_use]
    pub fn min_age(mut self, min_age: Duration) -> Self {
        self.min_age = min_age;
        self
    }

    /// The longest `max-age` honoured (default 1 day).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The least time between two fetches caused by unknown `kid`s, and between retries
    /// after a failed fetch (default 30 s).
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// How long past their age the last good keys are still used while fetches fail
    /// (default 1 hour). After that, tokens are refused as unverifiable until a fetch
    /// succeeds.
    #[must_use]
    pub fn stale_for(mut self, stale_for: Duration) -> Self {
        self.stale_for = stale_for;
        self
    }
}

/// Counters of a [`RemoteJwks`], since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksStats {
    /// Fetches attempted.
    pub fetches: u64,
    /// Fetches that failed (the previous keys stayed).
    pub fetch_failures: u64,
    /// Refreshes that ran in the background because the set was due, counted when they
    /// end (fetched, failed, or skipped for the back-off); verifications kept using the
    /// current set meanwhile.
    pub background_refreshes: u64,
    /// Fetches caused by a token naming an unknown `kid`.
    pub unknown_kid_fetches: u64,
    /// Tokens naming an unknown `kid` refused without a fetch (cooldown, negative cache).
    pub unknown_kid_refusals: u64,
    /// Verifications that used keys past their age: while a refresh ran in the background,
    /// or while fetches were failing.
    pub stale_uses: u64,
    /// Keys in the current set.
    pub keys: u64,
}

/// The most unknown `kid`s remembered at once.
const MAX_NEGATIVE: usize = 10_000;

/// An issuer's JWK Set, fetched from a URL and kept fresh. Cheap to clone.
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    fetcher: Fetcher,
    options: RemoteJwksOptions,
    current: ArcSwapOption<Snapshot>,
    /// Held by the one caller fetching; others wait for its result.
    flight: tokio::sync::Mutex<()>,
    /// Set while a background refresh task exists, so there is at most one.
    refreshing: AtomicBool,
    state: Mutex<State>,
    stats: Counters,
}

struct Snapshot {
    keys: Arc<KeySet>,
    fetched: Instant,
    refresh_at: Instant,
}

#[derive(Default)]
struct State {
    /// The last fetch failed: why, and no fetch before when.
    failed: Option<Failed>,
    /// The last fetch caused by an unknown `kid`.
    last_unknown_fetch: Option<Instant>,
    /// Unknown `kid`s and when they may cause a fetch again.
    negative: HashMap<String, Instant>,
}

/// A failed fetch, and the back-off it set.
struct Failed {
    /// Why it failed.
    error: JwksError,
    /// No fetch before this.
    retry_at: Instant,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
    background_refreshes: AtomicU64,
    unknown_kid_fetches: AtomicU64,
    unknown_kid_refusals: AtomicU64,
    stale_uses: AtomicU64,
}

/// Why a [`RemoteJwks`] got no keys from its URL: the document could not be fetched, or
/// its keys were refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The document could not be fetched (the issuer down, slow, answering an error
    /// status, too much, or not JSON).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The document was fetched, but is not a usable JWK Set: a key in it failed the
    /// checks every key gets (one bad key refuses the whole set). Shared, so that the
    /// error of one fetch can be handed to every caller that waited for it.
    #[error("the JWK Set was refused: {source}")]
    Keys {
        /// Why the set was refused.
        #[source]
        source: Arc<KeyError>,
    },
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.inner.url)
            .field("options", &self.inner.options)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RemoteJwks {
    /// A JWK Set to fetch from `url` (nothing is fetched yet: the first verification
    /// does, or [`RemoteJwks::refresh`]).
    ///
    /// # Errors
    /// [`FetchError::InvalidUrl`] or [`FetchError::Insecure`] for a URL that can never be
    /// fetched under `options`; [`FetchError::Client`] when the HTTP client cannot be built.
    pub fn new(
        url: impl Into<String>,
        options: RemoteJwksOptions,
    ) -> Result<RemoteJwks, FetchError> {
        let url = url.into();
        let fetcher = Fetcher::new(options.fetch.clone())?;
        fetcher.check_url(&url)?;
        Ok(RemoteJwks {
            inner: Arc::new(Inner {
                url,
                fetcher,
                options,
                current: ArcSwapOption::empty(),
                flight: tokio::sync::Mutex::new(()),
                refreshing: AtomicBool::new(false),
                state: Mutex::new(State::default()),
                stats: Counters::default(),
            }),
        })
    }

    /// The URL the set is fetched from.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Fetches the set now (waiting for a fetch already running instead of starting
    /// another), ignoring the cooldown: for start-up, to fail early when the issuer
    /// cannot be reached.
    ///
    /// # Errors
    /// A [`JwksError`] saying why no keys could be had; the keys fetched before, if any,
    /// stay in use.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        self.fetch(Instant::now(), None, true).await.map(|_| ())
    }

    /// The keys in use now, without waiting: `None` before the first successful fetch.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.inner
            .current
            .load()
            .as_ref()
            .map(|s| Arc::clone(&s.keys))
    }

    /// What the set has done so far.
    pub fn stats(&self) -> JwksStats {
        let c = &self.inner.stats;
        // Acquire: a caller that sees a background refresh counted also sees its result.
        let get = |a: &AtomicU64| a.load(Ordering::Acquire);
        JwksStats {
            fetches: get(&c.fetches),
            fetch_failures: get(&c.fetch_failures),
            background_refreshes: get(&c.background_refreshes),
            unknown_kid_fetches: get(&c.unknown_kid_fetches),
            unknown_kid_refusals: get(&c.unknown_kid_refusals),
            stale_uses: get(&c.stale_uses),
            keys: self.current().map_or(0, |k| k.len() as u64),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a refresh in a task of its own, unless one is already running or a failed
    /// fetch's back-off (the cooldown) has not ended. The task goes through the same
    /// single flight as every fetch; a failure keeps the current set and sets the back-off,
    /// so the next due verification after it tries again.
    fn refresh_in_background(&self, now: Instant) {
        if self.inner.refreshing.load(Ordering::Acquire) {
            return;
        }
        if self
            .state()
            .failed
            .as_ref()
            .is_some_and(|failed| now < failed.retry_at)
        {
            return;
        }
        if self
            .inner
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        // Ends the refresh however the task ends (finished, or dropped with its runtime):
        // the flag cleared first, so a caller that sees the refresh counted may start the
        // next one.
        struct Refreshing(RemoteJwks);
        impl Drop for Refreshing {
            fn drop(&mut self) {
                let inner = &self.0.inner;
                inner.refreshing.store(false, Ordering::Release);
                inner
                    .stats
                    .background_refreshes
                    .fetch_add(1, Ordering::Release);
            }
        }
        let guard = Refreshing(self.clone());
        // rmcp, a required dependency, enables tokio's runtime; reqwest needs one anyway.
        tokio::spawn(async move {
            // The outcome is recorded in the snapshot, the state and the stats.
            let _ = guard.0.fetch(now, None, false).await;
            drop(guard);
        });
    }

    /// Fetches a new set, single flight: a caller that waited for another's fetch takes
    /// its result if that fetch started after `since`, or if the set is no longer the
    /// `seen` one (a background refresh may end while an unknown `kid` waits). Unless
    /// `force`, no fetch happens before the retry time a failure set.
    async fn fetch(
        &self,
        since: Instant,
        seen: Option<&Arc<KeySet>>,
        force: bool,
    ) -> Result<Arc<KeySet>, JwksError> {
        let _flight = self.inner.flight.lock().await;
        if let Some(s) = self.inner.current.load_full()
            && (s.fetched >= since || seen.is_some_and(|seen| !Arc::ptr_eq(seen, &s.keys)))
        {
            return Ok(Arc::clone(&s.keys));
        }
        if !force
            && let Some(failed) = &self.state().failed
            && Instant::now() < failed.retry_at
        {
            return Err(failed.error.clone());
        }
        self.inner.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = Instant::now();
        let result = match self.inner.fetcher.get_json(&self.inner.url).await {
            Ok(doc) => KeySet::from_jwks_json(&serde_json::Value::Object(doc.document).to_string())
                .map_err(|e| JwksError::Keys {
                    source: Arc::new(e),
                })
                .map(|keys| (keys, doc.max_age)),
            Err(e) => Err(JwksError::Fetch(e)),
        };
        let options = &self.inner.options;
        match result {
            Ok((keys, max_age)) => {
                let age = max_age.map_or(options.default_age, |a| {
                    a.clamp(options.min_age, options.max_age)
                });
                let keys = Arc::new(keys);
                tracing::debug!(target: "rmcp_authz::jwks", url = %self.inner.url, keys = keys.len(), ?age, "JWK Set fetched");
                self.inner.current.store(Some(Arc::new(Snapshot {
                    keys: Arc::clone(&keys),
                    fetched,
                    refresh_at: fetched + age,
                })));
                let mut state = self.state();
                state.failed = None;
                state.negative.clear();
                Ok(keys)
            }
            Err(e) => {
                self.inner
                    .stats
                    .fetch_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "rmcp_authz::jwks", url = %self.inner.url, error = %e, "JWK Set fetch failed; keeping the previous keys");
                self.state().failed = Some(Failed {
                    error: e.clone(),
                    retry_at: Instant::now() + options.cooldown,
                });
                Err(e)
            }
        }
    }

    fn unavailable(&self, e: &JwksError) -> AuthError {
        AuthError::KeysUnavailable {
            reason: format!(
                "the issuer's keys cannot be had from {}: {e}",
                self.inner.url
            ),
        }
    }
}

/// The verifier's view of the set: the keys in use, fetched when due, and a newer set for
/// an unknown `kid` at most once per cooldown.
#[async_trait]
impl KeySource for RemoteJwks {
    /// The keys fetched so far, without waiting.
    fn current_keys(&self) -> Result<Arc<KeySet>, AuthError> {
        self.current().ok_or_else(|| AuthError::KeysUnavailable {
            reason: format!("the JWK Set at {} has not been fetched yet", self.url()),
        })
    }

    /// The keys to verify with, in order:
    /// 1. the current set while fresh, without waiting;
    /// 2. the current set once due but within `stale_for`, without waiting: a refresh is
    ///    started in the background (see `RemoteJwks::refresh_in_background`);
    /// 3. else (no set yet, or one too stale to use) a set fetched now, waited for.
    ///
    /// A `kid` the returned set lacks is `keys_for_unknown_kid`'s business.
    async fn keys(&self) -> Result<Arc<KeySet>, AuthError> {
        let now = Instant::now();
        if let Some(s) = &*self.inner.current.load() {
            if now < s.refresh_at {
                return Ok(Arc::clone(&s.keys));
            }
            if now < s.refresh_at + self.inner.options.stale_for {
                self.inner.stats.stale_uses.fetch_add(1, Ordering::Relaxed);
                self.refresh_in_background(now);
                return Ok(Arc::clone(&s.keys));
            }
        }
        self.fetch(now, None, false)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// After `seen` had no key for `kid`: a newer set that may have it, fetching one if
    /// the cooldown allows (one caller per cooldown; the others get `None` at once).
    async fn keys_for_unknown_kid(
        &self,
        kid: Option<&str>,
        seen: &Arc<KeySet>,
    ) -> Option<Arc<KeySet>> {
        // Another caller may have fetched since `seen` was loaded.
        if let Some(current) = self.current()
            && !Arc::ptr_eq(&current, seen)
        {
            return Some(current);
        }
        let now = Instant::now();
        let cooldown = self.inner.options.cooldown;
        {
            let mut state = self.state();
            let name = kid.unwrap_or("").to_owned();
            let remembered = state.negative.get(&name).is_some_and(|until| now < *until);
            let cooling = state
                .last_unknown_fetch
                .is_some_and(|last| now < last + cooldown);
            if remembered || cooling {
                if state.negative.len() < MAX_NEGATIVE {
                    state.negative.insert(name, now + cooldown);
                }
                drop(state);
                self.inner
                    .stats
                    .unknown_kid_refusals
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
            state.last_unknown_fetch = Some(now);
            state.negative.insert(name, now + cooldown);
        }
        self.inner
            .stats
            .unknown_kid_fetches
            .fetch_add(1, Ordering::Relaxed);
        self.fetch(now, Some(seen), false).await.ok()
    }

    fn location(&self) -> Option<&str> {
        Some(self.url())
    }
}

// The verifier and its builder are defined in `token`, which knows keys only as a
// `KeySource`; what is specific to a remote JWK Set is added here, where it is defined.
impl JwtVerifierBuilder {
    /// Takes the keys from a remote JWK Set, fetched and refreshed as the issuer rotates
    /// them (feature `jwks`). It cannot be combined with keys given here. The same as
    /// [`JwtVerifierBuilder::key_source`] with `jwks`.
    pub fn remote_jwks(self, jwks: RemoteJwks) -> Self {
        self.key_source(jwks)
    }
}

impl JwtVerifier {
    /// The remote JWK Set, if the keys come from one (its stats, a forced refresh)
    /// (feature `jwks`).
    pub fn remote_jwks(&self) -> Option<&RemoteJwks> {
        let source: &dyn std::any::Any = self.key_source();
        source.downcast_ref()
    }
}
