//! A token cache in front of any [`TokenSource`]: one token per scope set, replaced a
//! margin before it expires, one fetch shared by concurrent callers, and never an
//! expired token handed out.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::source::{AccessToken, TokenSource, TokenSourceError};

/// The default refresh margin: a token is replaced once it expires within 60 s.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// How many scope sets keep a cached token; past this, the cache starts over.
const MAX_SCOPE_SETS: usize = 256;

type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

/// Caches the tokens of a [`TokenSource`] (feature `agent`).
///
/// One token per scope set (the order and repetition of scopes do not matter). A cached
/// token is handed out until it expires within the margin (default
/// [`DEFAULT_REFRESH_MARGIN`]); then the next caller fetches a new one while the others
/// asking for the same scopes wait for it (single flight). If that fetch fails while the
/// cached token has not yet expired, the cached token is handed out; an expired token
/// never is. A token without a known expiry is kept until [`clear`](Refreshing::clear).
///
/// A margin longer than the tokens' lifetime makes every call fetch.
pub struct Refreshing<S> {
    inner: S,
    margin: Duration,
    slots: Mutex<HashMap<BTreeSet<String>, Slot>>,
    fetched: AtomicU64,
    refreshes: AtomicU64,
    reused: AtomicU64,
}

impl<S: fmt::Debug> fmt::Debug for Refreshing<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refreshing")
            .field("inner", &self.inner)
            .field("margin", &self.margin)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What a [`Refreshing`] cache has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RefreshStats {
    /// Tokens fetched from the inner source.
    pub fetched: u64,
    /// Of those, fetches that replaced a cached token near or past its expiry.
    pub refreshes: u64,
    /// Calls answered from the cache.
    pub reused: u64,
}

impl<S> Refreshing<S> {
    /// A cache in front of `inner`, with the default margin.
    pub fn new(inner: S) -> Refreshing<S> {
        Refreshing {
            inner,
            margin: DEFAULT_REFRESH_MARGIN,
            slots: Mutex::new(HashMap::new()),
            fetched: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            reused: AtomicU64::new(0),
        }
    }

    /// Replaces a token once it expires within `margin` (default 60 s).
    #[must_use]
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The inner source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> RefreshStats {
        RefreshStats {
            fetched: self.fetched.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
        }
    }

    /// Forgets every cached token (after a revocation, say); the next calls fetch.
    pub fn clear(&self) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn slot(&self, key: &BTreeSet<String>) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        if slots.len() >= MAX_SCOPE_SETS {
            slots.clear();
        }
        slots.entry(key.clone()).or_default().clone()
    }
}

#[async_trait]
impl<S: TokenSource> TokenSource for Refreshing<S> {
    async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
        let key: BTreeSet<String> = scopes.iter().filter(|s| !s.is_empty()).cloned().collect();
        let slot = self.slot(&key);
        // Held across the fetch: callers for the same scopes wait for it, then reuse it.
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && !token.expires_within(self.margin)
        {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(token.clone());
        }
        let scopes: Vec<String> = key.into_iter().collect();
        let fetched = match self.inner.token(&scopes).await {
            Ok(token) => token,
            Err(error) => {
                return match cached.as_ref() {
                    Some(token) if !token.is_expired() => {
                        tracing::warn!(%error, "token refresh failed; the cached token is still valid");
                        self.reused.fetch_add(1, Ordering::Relaxed);
                        Ok(token.clone())
                    }
                    _ => {
                        *cached = None;
                        Err(error)
                    }
                };
            }
        };
        self.fetched.fetch_add(1, Ordering::Relaxed);
        if cached.is_some() {
            self.refreshes.fetch_add(1, Ordering::Relaxed);
        }
        if fetched.is_expired() {
            *cached = None;
            return Err(TokenSourceError::Expired);
        }
        *cached = Some(fetched.clone());
        Ok(fetched)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicU64,
        lifetime: Option<Duration>,
    }

    #[async_trait]
    impl TokenSource for Counting {
        async fn token(&self, scopes: &[String]) -> Result<AccessToken, TokenSourceError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let expires_at = self.lifetime.map(|l| Instant::now() + l);
            Ok(AccessToken::new(
                format!("t{n}"),
                expires_at,
                scopes.to_vec(),
            ))
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_per_scope_set() {
        let source = Arc::new(Refreshing::new(Counting {
            lifetime: Some(Duration::from_secs(3600)),
            ..Counting::default()
        }));
        let ab = vec!["a".to_owned(), "b".to_owned()];
        let ba = vec!["b".to_owned(), "a".to_owned(), "a".to_owned()];
        let mut tasks = Vec::new();
        for i in 0..16 {
            let source = source.clone();
            let scopes = if i % 2 == 0 { ab.clone() } else { ba.clone() };
            tasks.push(tokio::spawn(async move { source.token(&scopes).await }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().token, "t0");
        }
        assert_eq!(source.inner().calls.load(Ordering::SeqCst), 1);
        source.token(&["c".to_owned()]).await.unwrap();
        let stats = source.stats();
        assert_eq!((stats.fetched, stats.refreshes, stats.reused), (2, 0, 15));
    }

    #[tokio::test]
    async fn a_token_within_the_margin_is_replaced() {
        let source = Refreshing::new(Counting {
            lifetime: Some(Duration::from_secs(30)),
            ..Counting::default()
        });
        let first = source.token(&[]).await.unwrap();
        let second = source.token(&[]).await.unwrap();
        assert_ne!(first.token, second.token);
        assert_eq!(source.stats().refreshes, 1);

        let source = source.margin(Duration::from_secs(5));
        source.clear();
        let first = source.token(&[]).await.unwrap();
        let second = source.token(&[]).await.unwrap();
        assert_eq!(first.token, second.token);
    }

    #[tokio::test]
    async fn an_expired_token_is_never_handed_out() {
        let source = Refreshing::new(Counting {
            lifetime: Some(Duration::ZERO),
            ..Counting::default()
        });
        assert!(matches!(
            source.token(&[]).await,
            Err(TokenSourceError::Expired)
        ));
    }
}
