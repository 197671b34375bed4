//! [`DpopOptions`]: the settings of a [`DpopVerifier`](super::DpopVerifier): the proof
//! algorithms, the `iat` window, the replay cache's size, the clock, and server nonces.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::algorithm::Algorithm;
use crate::clock::{Clock, SystemClock};

/// The longest a nonce lives: a nonce is a freshness check, not a credential.
const MAX_NONCE_LIFETIME: Duration = Duration::from_secs(3600);

/// Settings of a [`DpopVerifier`](super::DpopVerifier).
#[derive(Clone)]
#[must_use]
pub struct DpopOptions {
    pub(super) algorithms: Vec<Algorithm>,
    pub(super) window: Duration,
    pub(super) replay_capacity: u64,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) nonce_lifetime: Option<Duration>,
    pub(super) nonce_secret: Option<[u8; 32]>,
}

impl fmt::Debug for DpopOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopOptions")
            .field("algorithms", &self.algorithms)
            .field("window", &self.window)
            .field("replay_capacity", &self.replay_capacity)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .finish_non_exhaustive()
    }
}

impl Default for DpopOptions {
    /// ES256, ES384, EdDSA, PS256 and RS256; a 60-second window either side; up to
    /// 1,000,000 proofs remembered (some 40 MB at most).
    fn default() -> Self {
        DpopOptions {
            algorithms: vec![
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
                Algorithm::PS256,
                Algorithm::RS256,
            ],
            window: Duration::from_secs(60),
            replay_capacity: 1_000_000,
            clock: Arc::new(SystemClock),
            nonce_lifetime: None,
            nonce_secret: None,
        }
    }
}

impl DpopOptions {
    /// The proof algorithms accepted (symmetric ones are never accepted).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms
            .into_iter()
            .filter(|a| !a.is_symmetric())
            .collect();
        self
    }

    /// How far a proof's `iat` may be from now, either way (default 60 s); proofs are
    /// remembered for at least twice as long, so a replay is caught while it could still
    /// pass.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// About how many proofs the replay cache holds (default 1,000,000: the proofs of
    /// some 8,000 requests a second over the two-minute memory of the default window);
    /// past that, new proofs are refused ([`DpopError::ReplayCacheFull`](super::DpopError::ReplayCacheFull), a warning on
    /// target `rmcp_authz::dpop`) rather than old ones forgotten.
    pub fn replay_capacity(mut self, capacity: u64) -> Self {
        self.replay_capacity = capacity;
        self
    }

    /// The clock `iat` is compared with.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Requires every proof to carry a nonce this server issued at most `lifetime` ago
    /// (RFC 9449 section 9; off by default; at most an hour, a longer lifetime is taken
    /// as an hour). A proof without one is answered with
    /// `use_dpop_nonce` and a fresh nonce, and the client signs a new proof with it.
    /// Nonces cap how long a proof can be used by the server, not only by the client's
    /// clock; with replicas, each keeps its own replay cache, and nonces sealed with a
    /// shared [`nonce_secret`](DpopOptions::nonce_secret) bound what a replay across
    /// them can do.
    pub fn require_nonce(mut self, lifetime: Duration) -> Self {
        self.nonce_lifetime = Some(lifetime.min(MAX_NONCE_LIFETIME));
        self
    }

    /// The key nonces are sealed with (HMAC-SHA256; 32 random bytes), shared by
    /// replicas so a nonce one issued is accepted by the others. Default: a random key
    /// per verifier.
    pub fn nonce_secret(mut self, secret: [u8; 32]) -> Self {
        self.nonce_secret = Some(secret);
        self
    }

    /// The algorithms proofs may use, as the `algs` of a `DPoP` challenge lists them.
    pub(crate) fn algorithm_names(&self) -> String {
        let names: Vec<&str> = self.algorithms.iter().map(|a| a.as_str()).collect();
        names.join(" ")
    }
}
