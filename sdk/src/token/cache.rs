//! A verified-token cache in front of any [`Verifier`], with revocation by `jti`.
//!
//! This module owns [`CachedVerifier`] (the cache, a bounded moka map from a keyed
//! 128-bit tag of a token's signature to the [`Principal`] it verified as), its settings
//! ([`CacheOptions`]) and its counters ([`CacheStats`]); the revocation list it checks on
//! every verification, [`Revocations`], is the `revocation` module's. Tokens themselves
//! are never stored whole, see [`CachedVerifier`]. An entry never outlives its token
//! (`exp`) nor [`CacheOptions::max_ttl`]; failures are never cached.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::sync::Cache;
use siphasher::sip128::SipHasher24;

use super::revocation::{RevocationKind, Revocations};
use super::{AuthError, Verifier};
use crate::clock::{Clock, SystemClock};
use crate::error::excerpt;
use crate::principal::Principal;

/// Where hits and misses are traced.
const TRACE_TARGET: &str = "rmcp_authz::cache";

/// The cache key: the SipHash-2-4 (128 bits) of the token's signature part, under the
/// cache's own random key.
type TokenTag = u128;

/// A cached verification: the signed part of the token (header and payload, without the
/// signature) that the lookup compares exactly, and the principal it verified as.
#[derive(Clone)]
struct Entry {
    signed: Arc<str>,
    principal: Principal,
}

/// Settings of a [`CachedVerifier`].
///
/// ```
/// use std::time::Duration;
/// use rmcp_authz::token::CacheOptions;
/// let options = CacheOptions::default()
///     .max_entries(50_000)
///     .max_ttl(Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheOptions {
    pub(crate) max_entries: u64,
    pub(crate) max_ttl: Duration,
    pub(crate) revocation_ttl: Duration,
    pub(crate) max_revocations: usize,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            max_entries: 10_000,
            max_ttl: Duration::from_secs(5 * 60),
            revocation_ttl: Duration::from_secs(24 * 60 * 60),
            max_revocations: 100_000,
            clock: Arc::new(SystemClock),
        }
    }
}

impl CacheOptions {
    /// The defaults: 10,000 entries, 5 minutes, revocations kept 24 hours (at most
    /// 100,000), the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most verified tokens kept at once (moka evicts beyond it). Default 10,000.
    #[must_use]
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// The longest an entry is kept, whatever the token's `exp`. It bounds how long a
    /// change the cache cannot see (a key removed at the issuer, a token revoked there
    /// but not on [`Revocations`]) takes to apply. Default 5 minutes; zero disables
    /// caching (revocation still applies).
    #[must_use]
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// How long a revoked `jti` stays on the revocation list. Keep it at least as long as
    /// the longest lifetime your issuer gives tokens: after it, a revoked token that has
    /// not expired is accepted again. Default 24 hours.
    #[must_use]
    pub fn revocation_ttl(mut self, revocation_ttl: Duration) -> Self {
        self.revocation_ttl = revocation_ttl;
        self
    }

    /// The most `jti`s on the revocation list. When a revocation would exceed it,
    /// entries past their `revocation_ttl` are dropped first, then the oldest (with a
    /// warning). Zero turns revocation off. Default 100,000.
    #[must_use]
    pub fn max_revocations(mut self, max_revocations: usize) -> Self {
        self.max_revocations = max_revocations;
        self
    }

    /// The clock entries' expiry and the revocation list's ages are checked against.
    /// Default [`SystemClock`]; give the inner verifier the same one.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// What a [`CachedVerifier`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Verifications answered from the cache (the inner verifier was not called).
    pub hits: u64,
    /// Verifications passed to the inner verifier (nothing cached, or the entry had
    /// expired). `hits + misses` is the number of verifications.
    pub misses: u64,
    /// Tokens cached now. Approximate: moka settles evictions in batches.
    pub entries: u64,
    /// Verifications refused because the token's `jti` was revoked, hits or misses.
    pub revoked: u64,
    /// `jti`s on the revocation list now.
    pub revocations: u64,
}

/// Each entry lives until its token expires, and no longer than `max_ttl`.
struct UntilExpiry {
    clock: Arc<dyn Clock>,
    max_ttl: Duration,
}

impl UntilExpiry {
    /// How long a principal may be cached from now: zero once its token has expired.
    fn lifetime(&self, principal: &Principal) -> Duration {
        let left = principal.expires_at().saturating_sub(self.clock.now_unix());
        match u64::try_from(left) {
            Ok(secs) if secs > 0 => Duration::from_secs(secs).min(self.max_ttl),
            _ => Duration::ZERO,
        }
    }
}

impl Expiry<TokenTag, Entry> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenTag,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.lifetime(&value.principal))
    }

    fn expire_after_update(
        &self,
        _key: &TokenTag,
        value: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.lifetime(&value.principal))
    }
}

/// A [`Verifier`] that remembers the tokens another verifier accepted.
///
/// A token seen before, still unexpired, is answered from memory without checking its
/// signature again; any other token goes to the inner verifier, and is remembered if it
/// is accepted. An entry is keyed by a 128-bit tag of the token's signature (SipHash-2-4
/// under a key each cache draws from the system's random generator and never shows) and
/// holds the token's signed part (its header and claims, which the principal carries
/// anyway) and the [`Principal`]; a hit needs both the tag and the signed part to match.
/// Without the key, a different signature with the same tag can only be guessed, one
/// chance in 2^128 a try, so a hit is the very token that was verified. The token itself
/// is kept nowhere: without its signature an entry cannot be replayed as a bearer token.
/// Tagging the signature rather than the whole token, with a keyed hash rather than a
/// digest such as SHA-256, keeps a hit cheap on every CPU, with or without SHA
/// instructions. Entries last until the token's `exp` or
/// [`CacheOptions::max_ttl`], whichever is sooner; an entry found past its token's
/// `exp` (on the [`CacheOptions::clock`]) is dropped and the token verified again.
/// Refusals are never cached. At most [`CacheOptions::max_entries`] tokens are kept.
///
/// Every verification, hit or miss, also checks the [`Revocations`] list: a token whose
/// `jti` was revoked is refused with [`AuthError::Revoked`], one whose subject was with
/// [`AuthError::SubjectRevoked`].
///
/// Hits and misses are traced at target `rmcp_authz::cache` (level `TRACE`), without
/// tokens or tags.
///
/// ```
/// use std::sync::Arc;
/// use rmcp_authz::token::{AuthError, CacheOptions, CachedVerifier, Verifier};
/// # use rmcp_authz::dev::DevIssuer;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let issuer = DevIssuer::new("https://auth.example")?;
/// let jwt = issuer.verifier("https://mcp.example/mcp").build()?;
/// let cache = CachedVerifier::new(jwt, CacheOptions::default());
/// let revocations = cache.revocations();
/// let verifier: Arc<dyn Verifier> = Arc::new(cache);
///
/// let token = issuer.token("https://mcp.example/mcp").claim("jti", "t-1").mint()?;
/// assert!(verifier.verify(&token).await.is_ok()); // verified, then cached
/// assert!(verifier.verify(&token).await.is_ok()); // from the cache
///
/// revocations.revoke_jti("t-1");
/// let refused = verifier.verify(&token).await.unwrap_err();
/// assert!(matches!(refused, AuthError::Revoked { .. }));
/// # Ok(())
/// # }
/// ```
pub struct CachedVerifier<V> {
    inner: V,
    cache: Cache<TokenTag, Entry>,
    /// Tags signatures under this cache's random key.
    tagger: SipHasher24,
    clock: Arc<dyn Clock>,
    revocations: Revocations,
    max_ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    revoked: AtomicU64,
}

impl<V: fmt::Debug> fmt::Debug for CachedVerifier<V> {
    /// Shows the inner verifier, the settings and the counters; never tokens or keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedVerifier")
            .field("inner", &self.inner)
            .field("max_entries", &self.cache.policy().max_capacity())
            .field("max_ttl", &self.max_ttl)
            .field("stats", &self.stats())
            .field("revocations", &self.revocations)
            .finish()
    }
}

impl<V> CachedVerifier<V> {
    /// A cache in front of `inner`.
    ///
    /// # Panics
    /// Never in practice: only if the operating system's random generator fails when the
    /// cache's tag key is made, when no key can be made safely.
    pub fn new(inner: V, options: CacheOptions) -> Self {
        let mut key = [0_u8; 16];
        aws_lc_rs::rand::fill(&mut key).expect("the system random generator failed");
        let cache = Cache::builder()
            .name("rmcp_authz::cache")
            .max_capacity(options.max_entries)
            .expire_after(UntilExpiry {
                clock: Arc::clone(&options.clock),
                max_ttl: options.max_ttl,
            })
            .build();
        CachedVerifier {
            revocations: Revocations::new(
                options.revocation_ttl,
                options.max_revocations,
                Arc::clone(&options.clock),
            ),
            inner,
            cache,
            tagger: SipHasher24::new_with_key(&key),
            clock: options.clock,
            max_ttl: options.max_ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            revoked: AtomicU64::new(0),
        }
    }

    /// The revocation list, shared: revoke through any clone of it.
    pub fn revocations(&self) -> Revocations {
        self.revocations.clone()
    }

    /// The verifier behind the cache.
    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// Forgets every cached token (the revocation list is kept).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
            revoked: self.revoked.load(Ordering::Relaxed),
            revocations: u64::try_from(self.revocations.len()).unwrap_or(u64::MAX),
        }
    }

    /// Refuses `principal` if its `jti` or its subject is revoked at `now`, dropping its
    /// entry.
    fn check_revoked(
        &self,
        key: &TokenTag,
        principal: &Principal,
        now: i64,
    ) -> Result<(), AuthError> {
        let refused = if let Some(jti) = principal.token_id()
            && self.revocations.is_revoked_at(jti, now)
        {
            AuthError::Revoked { jti: excerpt(jti) }
        } else if let Some(subject) = principal.subject()
            && self
                .revocations
                .listed_at(RevocationKind::Subject, subject, now)
        {
            AuthError::SubjectRevoked {
                subject: excerpt(subject),
            }
        } else {
            return Ok(());
        };
        self.cache.invalidate(key);
        self.revoked.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(target: TRACE_TARGET, outcome = "revoked", "token refused: revoked");
        Err(refused)
    }
}

impl<V> CachedVerifier<V> {
    /// The token's signed part (header and payload) and the cache key: the tag of its
    /// signature part. A token without a dot is all signed part (it never verifies, so it
    /// is never cached).
    fn split_token<'t>(&self, token: &'t str) -> (&'t str, TokenTag) {
        let (signed, signature) = token.rsplit_once('.').unwrap_or((token, ""));
        (signed, self.tagger.hash(signature.as_bytes()).as_u128())
    }
}

#[async_trait]
impl<V: Verifier> Verifier for CachedVerifier<V> {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let (signed, key) = self.split_token(token);
        // Another token with the same signature (a forged payload) is a miss.
        if let Some(Entry { principal, .. }) = self.cache.get(&key).filter(|e| *e.signed == *signed)
        {
            // One clock read serves the expiry and the revocation checks.
            let now = self.clock.now_unix();
            if now < principal.expires_at() {
                self.hits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(target: TRACE_TARGET, outcome = "hit", "token cache hit");
                self.check_revoked(&key, &principal, now)?;
                return Ok(principal);
            }
            // Past the token's exp on our clock: moka's timer (on the monotonic clock)
            // has not caught up. Drop it and let the inner verifier decide.
            self.cache.invalidate(&key);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(target: TRACE_TARGET, outcome = "miss", "token cache miss");
        let principal = self.inner.verify(token).await?;
        let now = self.clock.now_unix();
        self.check_revoked(&key, &principal, now)?;
        let left = principal.expires_at().saturating_sub(now);
        if left > 0 && !self.max_ttl.is_zero() {
            let entry = Entry {
                signed: Arc::from(signed),
                principal: principal.clone(),
            };
            self.cache.insert(key, entry);
        }
        Ok(principal)
    }

    fn resource_uri(&self) -> Option<&str> {
        self.inner.resource_uri()
    }

    fn trusted_issuers(&self) -> Vec<String> {
        self.inner.trusted_issuers()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::clock::ManualClock;
    use crate::dev::DevIssuer;
    use crate::token::{AuthErrorKind, JwtVerifier};

    const AUD: &str = "https://rs";
    const T0: i64 = 1_750_000_000;

    /// A verifier that counts the calls it passes on.
    #[derive(Debug)]
    struct Counting {
        inner: JwtVerifier,
        calls: AtomicUsize,
    }

    impl Counting {
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Verifier for Counting {
        async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.verify_sync(token)
        }

        fn resource_uri(&self) -> Option<&str> {
            Some(AUD)
        }

        fn trusted_issuers(&self) -> Vec<String> {
            vec!["https://as".to_owned()]
        }
    }

    struct Setup {
        issuer: DevIssuer,
        clock: Arc<ManualClock>,
        cache: CachedVerifier<Counting>,
    }

    /// An issuer, a zero-leeway verifier and a cache, all on one manual clock.
    fn setup(options: CacheOptions) -> Setup {
        let clock = Arc::new(ManualClock::new(T0));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let issuer = DevIssuer::new("https://as")
            .unwrap()
            .clock(Arc::clone(&dyn_clock));
        let jwt = issuer.verifier(AUD).leeway(Duration::ZERO).build().unwrap();
        let counting = Counting {
            inner: jwt,
            calls: AtomicUsize::new(0),
        };
        let cache = CachedVerifier::new(counting, options.clock(dyn_clock));
        Setup {
            issuer,
            clock,
            cache,
        }
    }

    fn mint(issuer: &DevIssuer, sub: &str, jti: &str) -> String {
        issuer
            .token(AUD)
            .subject(sub)
            .claim("jti", jti)
            .mint()
            .unwrap()
    }

    #[tokio::test]
    async fn second_verify_is_a_hit_without_the_inner_verifier() {
        let s = setup(CacheOptions::default());
        let token = mint(&s.issuer, "a", "x");
        let first = s.cache.verify(&token).await.unwrap();
        let second = s.cache.verify(&token).await.unwrap();
        assert_eq!(s.cache.inner().calls(), 1);
        assert_eq!(first.subject(), Some("a"));
        assert_eq!(second.subject(), Some("a"));
        assert_eq!(second.token_id(), Some("x"));
        let stats = s.cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
    }

    #[tokio::test]
    async fn distinct_tokens_do_not_collide() {
        let s = setup(CacheOptions::default());
        let a = mint(&s.issuer, "alice", "ja");
        let b = mint(&s.issuer, "bob", "jb");
        for _ in 0..2 {
            assert_eq!(s.cache.verify(&a).await.unwrap().subject(), Some("alice"));
            assert_eq!(s.cache.verify(&b).await.unwrap().subject(), Some("bob"));
        }
        assert_eq!(s.cache.inner().calls(), 2);
        let stats = s.cache.stats();
        assert_eq!((stats.hits, stats.misses), (2, 2));
    }

    #[tokio::test]
    async fn refusals_are_not_cached() {
        let s = setup(CacheOptions::default());
        let wrong_aud = s.issuer.token("https://elsewhere").mint().unwrap();
        for n in 1..=3 {
            let e = s.cache.verify(&wrong_aud).await.unwrap_err();
            assert_eq!(e.kind(), AuthErrorKind::WrongAudience);
            assert!(s.cache.verify("garbage").await.is_err());
            assert_eq!(s.cache.inner().calls(), 2 * n);
        }
        s.cache.cache.run_pending_tasks();
        assert_eq!(s.cache.stats().entries, 0);
        assert_eq!(s.cache.stats().hits, 0);
    }

    #[tokio::test]
    async fn an_entry_never_outlives_its_token() {
        let s = setup(CacheOptions::default());
        let token = s
            .issuer
            .token(AUD)
            .subject("a")
            .claim("exp", T0 + 60)
            .claim("jti", "x")
            .mint()
            .unwrap();
        s.cache.verify(&token).await.unwrap();

        s.clock.advance(Duration::from_secs(30));
        s.cache.verify(&token).await.unwrap();
        assert_eq!(s.cache.inner().calls(), 1, "a hit at +30 s");

        s.clock.advance(Duration::from_secs(31));
        let e = s.cache.verify(&token).await.unwrap_err();
        assert!(matches!(e, AuthError::Expired { .. }), "{e}");
        assert_eq!(s.cache.inner().calls(), 2, "re-verified at +61 s");
        s.cache.cache.run_pending_tasks();
        let stats = s.cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 0));
    }

    #[test]
    fn entry_lifetime_is_the_sooner_of_exp_and_max_ttl() {
        let clock = Arc::new(ManualClock::new(T0));
        let issuer = DevIssuer::new("https://as").unwrap().clock(clock.clone());
        let v = issuer.verifier(AUD).build().unwrap();
        let expiry = UntilExpiry {
            clock: clock.clone(),
            max_ttl: Duration::from_secs(300),
        };
        let lifetime = |exp: i64| {
            let t = issuer.token(AUD).claim("exp", exp).mint().unwrap();
            expiry.lifetime(&v.verify_sync(&t).unwrap())
        };
        assert_eq!(lifetime(T0 + 60), Duration::from_secs(60));
        assert_eq!(lifetime(T0 + 3600), Duration::from_secs(300));
        // Within the verifier's leeway but expired: accepted, never cached.
        assert_eq!(lifetime(T0 - 5), Duration::ZERO);
        assert_eq!(lifetime(T0), Duration::ZERO);
    }

    #[tokio::test]
    async fn expired_within_leeway_is_accepted_but_not_cached() {
        let clock = Arc::new(ManualClock::new(T0));
        let issuer = DevIssuer::new("https://as").unwrap().clock(clock.clone());
        let jwt = issuer.verifier(AUD).build().unwrap(); // 30 s leeway
        let cache = CachedVerifier::new(jwt, CacheOptions::default().clock(clock.clone()));
        let token = issuer.token(AUD).claim("exp", T0 - 5).mint().unwrap();
        for _ in 0..2 {
            cache.verify(&token).await.unwrap();
        }
        cache.cache.run_pending_tasks();
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (0, 2, 0));
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let s = setup(CacheOptions::default().max_entries(100));
        for i in 0..1_000 {
            let token = mint(&s.issuer, "a", &format!("j{i}"));
            s.cache.verify(&token).await.unwrap();
        }
        s.cache.cache.run_pending_tasks();
        let stats = s.cache.stats();
        assert!(stats.entries <= 100, "{stats:?}");
        assert_eq!(stats.misses, 1_000);
    }

    #[tokio::test]
    async fn revocation_takes_effect_at_once() {
        let s = setup(CacheOptions::default());
        let token = mint(&s.issuer, "a", "x");
        s.cache.verify(&token).await.unwrap();
        s.cache.verify(&token).await.unwrap();
        assert_eq!(s.cache.inner().calls(), 1);

        let revocations = s.cache.revocations();
        revocations.revoke_jti("x");
        assert!(revocations.is_revoked("x"));
        let e = s.cache.verify(&token).await.unwrap_err();
        assert_eq!(e, AuthError::Revoked { jti: "x".into() });
        assert_eq!(e.kind(), AuthErrorKind::Revoked);
        s.cache.cache.run_pending_tasks();
        assert_eq!(s.cache.stats().entries, 0, "the entry was dropped");

        // A token never seen before with the same jti goes to the inner verifier and is
        // refused after it, and not cached either.
        let fresh = mint(&s.issuer, "b", "x");
        let e = s.cache.verify(&fresh).await.unwrap_err();
        assert!(matches!(e, AuthError::Revoked { .. }));
        assert_eq!(s.cache.inner().calls(), 2);
        s.cache.cache.run_pending_tasks();
        let stats = s.cache.stats();
        assert_eq!(stats.entries, 0);
        assert_eq!(stats.revoked, 2);
        assert_eq!(stats.revocations, 1);

        // Other tokens are unaffected; unrevoking restores the first.
        let other = mint(&s.issuer, "c", "y");
        assert!(s.cache.verify(&other).await.is_ok());
        assert!(revocations.unrevoke("x"));
        assert!(s.cache.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn revoked_jti_is_truncated_in_the_error() {
        let s = setup(CacheOptions::default());
        let long = "j".repeat(500);
        let token = mint(&s.issuer, "a", &long);
        s.cache.revocations().revoke_jti(&long);
        match s.cache.verify(&token).await.unwrap_err() {
            AuthError::Revoked { jti } => assert!(jti.len() < 100, "{}", jti.len()),
            e => panic!("unexpected {e}"),
        }
    }

    #[tokio::test]
    async fn stats_count_hits_and_misses() {
        let s = setup(CacheOptions::default());
        let a = mint(&s.issuer, "a", "ja");
        let b = mint(&s.issuer, "b", "jb");
        assert_eq!(s.cache.stats(), CacheStats::default());
        s.cache.verify(&a).await.unwrap(); // miss
        s.cache.verify(&a).await.unwrap(); // hit
        s.cache.verify(&a).await.unwrap(); // hit
        s.cache.verify(&b).await.unwrap(); // miss
        let _ = s.cache.verify("garbage").await; // miss
        s.cache.verify(&b).await.unwrap(); // hit
        s.cache.cache.run_pending_tasks();
        let stats = s.cache.stats();
        assert_eq!(stats.hits, 3);
        assert_eq!(stats.misses, 3);
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.revoked, 0);
        assert_eq!(s.cache.inner().calls(), 3);
    }

    #[tokio::test]
    async fn cached_signature_on_another_payload_is_not_a_hit() {
        let s = setup(CacheOptions::default());
        let token = mint(&s.issuer, "a", "x");
        s.cache.verify(&token).await.unwrap();
        let other = mint(&s.issuer, "admin", "y");
        let (_, signature) = token.rsplit_once('.').unwrap();
        let (signed, _) = other.rsplit_once('.').unwrap();
        let forged = format!("{signed}.{signature}");
        let err = s.cache.verify(&forged).await.unwrap_err();
        assert!(matches!(err, AuthError::BadSignature { .. }), "{err}");
        assert_eq!(s.cache.inner().calls(), 2);
        assert_eq!(s.cache.stats().hits, 0);
    }

    #[tokio::test]
    async fn cached_payload_with_another_signature_is_not_a_hit() {
        let s = setup(CacheOptions::default());
        let token = mint(&s.issuer, "a", "x");
        s.cache.verify(&token).await.unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        // The same signed part, one character of the signature changed (its first: all
        // six of its bits are the signature's).
        let first = if signature.starts_with('A') { "B" } else { "A" };
        let forged = format!("{signed}.{first}{}", &signature[1..]);
        let err = s.cache.verify(&forged).await.unwrap_err();
        assert!(matches!(err, AuthError::BadSignature { .. }), "{err}");
        assert_eq!(s.cache.inner().calls(), 2);
        assert_eq!(s.cache.stats().hits, 0);
    }

    #[test]
    fn each_cache_tags_under_its_own_key() {
        let a = setup(CacheOptions::default());
        let b = setup(CacheOptions::default());
        let token = mint(&a.issuer, "a", "x");
        let (signed, tag) = a.cache.split_token(&token);
        assert_eq!(a.cache.split_token(&token), (signed, tag));
        assert_ne!(b.cache.split_token(&token).1, tag);
        assert_ne!(a.cache.split_token(signed).1, tag);
    }

    #[tokio::test]
    async fn zero_max_ttl_disables_caching() {
        let s = setup(CacheOptions::default().max_ttl(Duration::ZERO));
        let token = mint(&s.issuer, "a", "x");
        s.cache.verify(&token).await.unwrap();
        s.cache.verify(&token).await.unwrap();
        assert_eq!(s.cache.inner().calls(), 2);
    }

    #[test]
    fn forwards_metadata_and_debug_shows_no_token() {
        let s = setup(CacheOptions::default());
        assert_eq!(s.cache.resource_uri(), Some(AUD));
        assert_eq!(s.cache.trusted_issuers(), ["https://as"]);
        let token = mint(&s.issuer, "a", "x");
        let principal = s.cache.inner().inner.verify_sync(&token).unwrap();
        let (signed, key) = s.cache.split_token(&token);
        let entry = Entry {
            signed: Arc::from(signed),
            principal,
        };
        s.cache.cache.insert(key, entry);
        s.cache.revocations().revoke_jti("secret-jti");
        let debug = format!("{:?}", s.cache);
        assert!(!debug.contains(&token));
        assert!(!debug.contains("secret-jti"));
        assert!(!debug.contains(&format!("{key:x}")));
        assert!(!debug.contains(&key.to_string()));
    }
}
