//! Time, injected.
//!
//! Every check that depends on the current time (token expiry, `nbf`, later cache
//! lifetimes) asks a [`Clock`] rather than the operating system, so tests can move time
//! forward without sleeping. Production code uses [`SystemClock`]; tests, and users'
//! own tests, use [`ManualClock`].

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time, in whole seconds since the Unix epoch.
///
/// JWT dates (`exp`, `nbf`, `iat`) are whole seconds (RFC 7519 section 2, NumericDate), so
/// that is the resolution every check works at.
///
/// ```
/// use rmcp_authz::{Clock, SystemClock};
/// assert!(SystemClock.now_unix() > 1_700_000_000);
/// ```
pub trait Clock: Send + Sync + Debug {
    /// Seconds since 1970-01-01T00:00:00Z. May be negative for times before the epoch.
    fn now_unix(&self) -> i64;
}

/// The operating system's wall clock. The default everywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that only moves when told to: for tests of expiry and caching.
///
/// Share it through an `Arc` to keep a handle while the verifier holds another.
///
/// ```
/// use std::time::Duration;
/// use rmcp_authz::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now_unix(), 1_060);
/// clock.set(5);
/// assert_eq!(clock.now_unix(), 5);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `now_unix` seconds since the epoch.
    pub fn new(now_unix: i64) -> Self {
        Self {
            now: AtomicI64::new(now_unix),
        }
    }

    /// Sets the time to `now_unix` seconds since the epoch.
    pub fn set(&self, now_unix: i64) {
        self.now.store(now_unix, Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (whole seconds; saturating).
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(secs))
            });
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_unix(&self) -> i64 {
        (**self).now_unix()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2023() {
        assert!(SystemClock.now_unix() > 1_700_000_000);
    }

    #[test]
    fn manual_clock_advances_and_saturates() {
        let c = ManualClock::new(i64::MAX - 1);
        c.advance(Duration::from_secs(10));
        assert_eq!(c.now_unix(), i64::MAX);
    }

    #[test]
    fn arc_of_clock_is_a_clock() {
        let c = std::sync::Arc::new(ManualClock::new(7));
        let as_dyn: &dyn Clock = &c;
        c.set(9);
        assert_eq!(as_dyn.now_unix(), 9);
    }
}
