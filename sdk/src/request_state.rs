//! `requestState` bound to the caller who was given it.
//!
//! In a multi round-trip request (SEP-2322, MCP 2026-07-28) a server answers `tools/call`,
//! `prompts/get` or `resources/read` with an `InputRequiredResult` carrying an opaque
//! `requestState`; the client retries the same request with `inputResponses` and that
//! state, echoed verbatim. The echo is attacker-controlled input: the specification says a
//! server MUST protect its integrity when it affects authorization, and SHOULD bind it to
//! the caller. Without a session, nothing else ties the second round to the first.
//!
//! A [`StateSealer`] does both for every handler behind the
//! [`Authorized`](crate::server::Authorized) wrapper, without the handler knowing:
//!
//! - on the way out, the handler's state is sealed with rmcp's own
//!   [`RequestStateCodec`] (HMAC-SHA256), with an expiry, and with *associated data*
//!   naming the caller (issuer, subject and client: the identity a task is bound to) and
//!   the request (method and tool, prompt or resource). The associated data is
//!   authenticated but not stored, so the state carries no identity of its own;
//! - on the way back, before the handler runs, the state is opened with the associated
//!   data of *this* request's caller: a state replayed by another principal, against
//!   another tool, altered, expired, or sealed under another key does not open, and the
//!   request is refused with one fixed `-32602` error, as rmcp's codec asks (the audit
//!   event records that error code; the cause, such as `request_state_expired`, is logged
//!   at DEBUG on target `rmcp_authz::rejection`). The handler receives exactly the state
//!   it emitted.
//!
//! The state is signed, not encrypted: the client can read the handler's state, as it
//! could before. Replicas behind a load balancer must share the key
//! ([`StateSealer::with_key`] or [`StateSealer::with_keyring`]); a key generated at
//! start-up ([`StateSealer::generate`]) suits one process.
//!
//! ```
//! use rmcp_authz::dev::DevIssuer;
//! use rmcp_authz::request_state::{Originating, StateSealer};
//! # let issuer = DevIssuer::new("https://auth.example")?;
//! # let verifier = issuer.verifier("https://mcp.example/mcp").build()?;
//! # let mint = |sub: &str| issuer.token("https://mcp.example/mcp").subject(sub).client_id("app").mint();
//! let alice = verifier.verify_sync(&mint("alice")?)?;
//! let bob = verifier.verify_sync(&mint("bob")?)?;
//! let sealer = StateSealer::with_key([7u8; 32])?;
//! let now = 1_800_000_000;
//!
//! let round = Originating::Tool("book_flight");
//! let sealed = sealer.seal_at(&alice, round, "step=2", now);
//! assert_eq!(sealer.open_at(&alice, round, &sealed, now + 60)?, "step=2");
//! // Bob replays alice's state: it does not open.
//! assert!(sealer.open_at(&bob, round, &sealed, now + 60).is_err());
//! // Nor does alice's state for another tool.
//! assert!(sealer.open_at(&alice, Originating::Tool("cancel_flight"), &sealed, now).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rmcp::ErrorData as McpError;
use rmcp::model::{RequestStateCodec, RequestStateError, SealOptions};

use crate::principal::Principal;

/// How long a sealed state opens by default: long enough for a person to answer an
/// elicitation, short enough that a leaked state soon stops working.
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(15 * 60);

/// Separates this crate's associated data from any other use of the same key.
const DOMAIN: &[u8] = b"rmcp-authz/request-state/v1";

/// The length of the expiry (unix seconds, big-endian) in front of every sealed payload.
const EXPIRY_LEN: usize = 8;

/// The request a `requestState` belongs to: the three requests that may answer
/// `InputRequiredResult` (SEP-2322), with the tool, prompt or resource they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Originating<'a> {
    /// `tools/call` of this tool.
    Tool(&'a str),
    /// `prompts/get` of this prompt.
    Prompt(&'a str),
    /// `resources/read` of this URI.
    Resource(&'a str),
}

impl Originating<'_> {
    fn method_and_target(&self) -> (&'static str, &str) {
        match *self {
            Originating::Tool(name) => ("tools/call", name),
            Originating::Prompt(name) => ("prompts/get", name),
            Originating::Resource(uri) => ("resources/read", uri),
        }
    }
}

/// Seals the `requestState` a handler emits to the caller and the request, and opens it
/// only for the same caller and request. Cheap to clone; the key is zeroized on drop.
#[derive(Clone)]
pub struct StateSealer {
    codec: RequestStateCodec,
    ttl: Duration,
}

impl fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rmcp's codec redacts its keys.
        f.debug_struct("StateSealer")
            .field("codec", &self.codec)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl StateSealer {
    /// A sealer with a fresh random 32-byte key: states it seals open only in this
    /// process, so it suits a single replica (a restart, or a retry that reaches another
    /// replica, makes the client start the request again).
    ///
    /// # Errors
    /// [`SealerKeyError::Random`] if the system random generator fails.
    pub fn generate() -> Result<StateSealer, SealerKeyError> {
        let mut key = vec![0u8; RequestStateCodec::MIN_KEY_LENGTH];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SealerKeyError::Random)?;
        StateSealer::with_key(key)
    }

    /// A sealer with one key of at least 32 random bytes, shared by every replica.
    ///
    /// # Errors
    /// [`SealerKeyError::KeyTooShort`] for a key under 32 bytes.
    pub fn with_key(key: impl Into<Vec<u8>>) -> Result<StateSealer, SealerKeyError> {
        Ok(StateSealer::from_codec(RequestStateCodec::try_new(key)?))
    }

    /// A sealer with several keys, for rotation: states are sealed with `active` and
    /// opened with whichever key sealed them (rmcp's `rs2` format names the key). Keep a
    /// retired key until the states it sealed have expired ([`StateSealer::ttl`]).
    ///
    /// # Errors
    /// [`SealerKeyError::KeyTooShort`] for a key under 32 bytes;
    /// [`SealerKeyError::Keyring`] for an empty ring, a repeated or invalid key id, or an
    /// `active` id the ring lacks.
    pub fn with_keyring<K, V>(
        active: impl Into<String>,
        keys: impl IntoIterator<Item = (K, V)>,
    ) -> Result<StateSealer, SealerKeyError>
    where
        K: Into<String>,
        V: Into<Vec<u8>>,
    {
        Ok(StateSealer::from_codec(
            RequestStateCodec::new_with_keyring(active, keys)?,
        ))
    }

    fn from_codec(codec: RequestStateCodec) -> StateSealer {
        StateSealer {
            codec,
            ttl: DEFAULT_STATE_TTL,
        }
    }

    /// How long a sealed state opens after it was sealed. Default:
    /// [`DEFAULT_STATE_TTL`] (15 minutes). Rounded down to whole seconds.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Seals `state`, emitted by a handler at `now` (unix seconds) for `principal`'s
    /// `request`, into the `requestState` to send.
    pub fn seal_at(
        &self,
        principal: &Principal,
        request: Originating<'_>,
        state: &str,
        now: i64,
    ) -> String {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let exp = now.saturating_add(ttl);
        let mut payload = Vec::with_capacity(EXPIRY_LEN + state.len());
        payload.extend_from_slice(&exp.to_be_bytes());
        payload.extend_from_slice(state.as_bytes());
        let ad = associated_data(principal, request);
        self.codec
            .seal_with(&payload, &SealOptions::new().associated_data(&ad))
    }

    /// Opens a `requestState` echoed at `now` by `principal` retrying `request`: the
    /// state the handler emitted, if it was sealed by this sealer's keys for this caller
    /// and this request and has not expired.
    ///
    /// # Errors
    /// A [`StateRejected`]; answer every kind with [`StateRejected::to_mcp_error`], which
    /// does not tell the client which it was.
    pub fn open_at(
        &self,
        principal: &Principal,
        request: Originating<'_>,
        sealed: &str,
        now: i64,
    ) -> Result<String, StateRejected> {
        let ad = associated_data(principal, request);
        let payload = self.codec.open_with(sealed, &ad).map_err(|e| match e {
            RequestStateError::MalformedFormat
            | RequestStateError::InvalidEncoding
            | RequestStateError::InvalidKeyId => StateRejected::Malformed,
            RequestStateError::UnknownKeyId => StateRejected::UnknownKey,
            _ => StateRejected::NotBound,
        })?;
        // Authenticated from here on: the framing is ours.
        let Some((exp, state)) = payload.split_first_chunk::<EXPIRY_LEN>() else {
            return Err(StateRejected::Malformed);
        };
        let exp = i64::from_be_bytes(*exp);
        if now >= exp {
            return Err(StateRejected::Expired { exp, now });
        }
        String::from_utf8(state.to_vec()).map_err(|_| StateRejected::Malformed)
    }

    /// The wrapper's outgoing hook: replaces the state of an `InputRequiredResult`
    /// (`None` stays `None`) with its sealed form.
    pub fn seal_in_place(
        &self,
        principal: &Principal,
        request: Originating<'_>,
        state: &mut Option<String>,
        now: i64,
    ) {
        if let Some(plain) = state.as_deref() {
            *state = Some(self.seal_at(principal, request, plain, now));
        }
    }

    /// The wrapper's incoming hook: replaces the `requestState` of a retried request
    /// (`None` stays `None`) with the state the handler emitted.
    ///
    /// # Errors
    /// A [`StateRejected`] when the state does not open; the request must not reach the
    /// handler.
    pub fn open_in_place(
        &self,
        principal: &Principal,
        request: Originating<'_>,
        state: &mut Option<String>,
        now: i64,
    ) -> Result<(), StateRejected> {
        if let Some(sealed) = state.as_deref() {
            *state = Some(self.open_at(principal, request, sealed, now)?);
        }
        Ok(())
    }
}

/// The caller and the request, unambiguously: a domain label, then each field with a
/// presence byte and a length (so `("ab", "c")` and `("a", "bc")` differ, and an absent
/// subject differs from an empty one).
fn associated_data(principal: &Principal, request: Originating<'_>) -> Vec<u8> {
    let (method, target) = request.method_and_target();
    let fields = [
        Some(principal.issuer()),
        principal.subject(),
        principal.client_id(),
        Some(method),
        Some(target),
    ];
    let len = fields.iter().flatten().map(|f| f.len() + 9).sum::<usize>();
    let mut ad = Vec::with_capacity(DOMAIN.len() + len + fields.len());
    ad.extend_from_slice(DOMAIN);
    for field in fields {
        match field {
            None => ad.push(0),
            Some(value) => {
                ad.push(1);
                ad.extend_from_slice(&(value.len() as u64).to_be_bytes());
                ad.extend_from_slice(value.as_bytes());
            }
        }
    }
    ad
}

/// Why a [`StateSealer`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealerKeyError {
    /// A key is shorter than the codec accepts.
    #[error(
        "a request-state key is {actual} bytes; use at least {minimum} random bytes (e.g. `openssl rand 32`)"
    )]
    KeyTooShort {
        /// The least accepted.
        minimum: usize,
        /// The key's length.
        actual: usize,
    },
    /// The keyring cannot be used.
    #[error("the request-state keyring cannot be used: {0}")]
    Keyring(String),
    /// The system random generator failed.
    #[error("the system random generator failed; no request-state key could be generated")]
    Random,
}

impl From<RequestStateError> for SealerKeyError {
    fn from(e: RequestStateError) -> Self {
        match e {
            RequestStateError::KeyTooShort { minimum, actual } => {
                SealerKeyError::KeyTooShort { minimum, actual }
            }
            // Messages of the codec's configuration errors name no key material.
            other => SealerKeyError::Keyring(other.to_string()),
        }
    }
}

/// Why an echoed `requestState` was refused. The client is told only that it was
/// invalid ([`StateRejected::to_mcp_error`]); [`StateRejected::code`] is for the audit
/// log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateRejected {
    /// The tag does not verify for this caller and request: issued to another principal,
    /// for another tool, prompt or resource, altered, or sealed with a key no longer held.
    #[error(
        "requestState does not verify for this caller and request (another principal's, another request's, or altered)"
    )]
    NotBound,
    /// The state names a key this sealer does not hold (retired, or another server's).
    #[error("requestState was sealed with a key this server does not hold")]
    UnknownKey,
    /// The state has expired.
    #[error("requestState expired at {exp} (now {now})")]
    Expired {
        /// When it expired (unix seconds).
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// The value is not a sealed state at all.
    #[error("requestState is not a sealed state of this server")]
    Malformed,
}

impl StateRejected {
    /// A stable code for the audit log: `request_state_not_bound`,
    /// `request_state_unknown_key`, `request_state_expired` or `request_state_malformed`.
    pub fn code(&self) -> &'static str {
        match self {
            StateRejected::NotBound => "request_state_not_bound",
            StateRejected::UnknownKey => "request_state_unknown_key",
            StateRejected::Expired { .. } => "request_state_expired",
            StateRejected::Malformed => "request_state_malformed",
        }
    }

    /// The one error every rejection answers: `-32602` (invalid params), the same text
    /// whatever the cause, so a client cannot probe which check failed, and
    /// `data: {"error": "invalid_request_state"}`.
    pub fn to_mcp_error(&self) -> McpError {
        McpError::invalid_params(
            "requestState is not valid for this request; send the request again without it",
            Some(serde_json::json!({ "error": "invalid_request_state" })),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PrincipalParts;

    const NOW: i64 = 1_800_000_000;

    fn who(issuer: &str, subject: Option<&str>, client: Option<&str>) -> Principal {
        Principal::from(PrincipalParts {
            issuer: issuer.to_owned(),
            subject: subject.map(str::to_owned),
            client_id: client.map(str::to_owned),
            exp: NOW + 3600,
            ..PrincipalParts::default()
        })
    }

    fn alice() -> Principal {
        who("https://as.example", Some("alice"), Some("app"))
    }

    fn sealer() -> StateSealer {
        StateSealer::with_key([42u8; 32]).unwrap()
    }

    const TOOL: Originating<'static> = Originating::Tool("book");

    #[test]
    fn the_same_caller_and_request_get_the_state_back() {
        let s = sealer();
        let sealed = s.seal_at(&alice(), TOOL, "step=2;seat=14C", NOW);
        assert_ne!(sealed, "step=2;seat=14C");
        assert_eq!(
            s.open_at(&alice(), TOOL, &sealed, NOW + 1).unwrap(),
            "step=2;seat=14C"
        );
        // A fresh principal value for the same caller (a new token) opens it too.
        let again = who("https://as.example", Some("alice"), Some("app"));
        assert_eq!(
            s.open_at(&again, TOOL, &sealed, NOW).unwrap(),
            "step=2;seat=14C"
        );
    }

    #[test]
    fn the_state_names_no_caller() {
        let sealed = sealer().seal_at(&alice(), TOOL, "x", NOW);
        assert!(!sealed.contains("alice"));
        use base64::Engine as _;
        for part in sealed.split('.') {
            if let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains("alice") && !text.contains("as.example"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn another_principal_cannot_open_it() {
        let s = sealer();
        let sealed = s.seal_at(&alice(), TOOL, "step=2", NOW);
        for other in [
            who("https://as.example", Some("bob"), Some("app")),
            who("https://as.example", Some("alice"), Some("other-app")),
            who("https://as.example", Some("alice"), None),
            who("https://other.example", Some("alice"), Some("app")),
            who("https://as.example", None, Some("app")),
        ] {
            assert_eq!(
                s.open_at(&other, TOOL, &sealed, NOW),
                Err(StateRejected::NotBound),
                "{other:?}"
            );
        }
    }

    #[test]
    fn another_request_cannot_open_it() {
        let s = sealer();
        let sealed = s.seal_at(&alice(), TOOL, "step=2", NOW);
        for other in [
            Originating::Tool("cancel"),
            Originating::Prompt("book"),
            Originating::Resource("book"),
        ] {
            assert_eq!(
                s.open_at(&alice(), other, &sealed, NOW),
                Err(StateRejected::NotBound),
                "{other:?}"
            );
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let s = sealer();
        let ab_c = who("https://as.example", Some("ab"), Some("c"));
        let a_bc = who("https://as.example", Some("a"), Some("bc"));
        let sealed = s.seal_at(&ab_c, TOOL, "x", NOW);
        assert_eq!(
            s.open_at(&a_bc, TOOL, &sealed, NOW),
            Err(StateRejected::NotBound)
        );
        // Absent and empty differ.
        let empty = who("https://as.example", Some(""), Some("app"));
        let absent = who("https://as.example", None, Some("app"));
        let sealed = s.seal_at(&empty, TOOL, "x", NOW);
        assert_eq!(
            s.open_at(&absent, TOOL, &sealed, NOW),
            Err(StateRejected::NotBound)
        );
        assert_ne!(
            associated_data(&empty, TOOL),
            associated_data(&absent, TOOL)
        );
    }

    #[test]
    fn an_altered_state_does_not_open() {
        let s = sealer();
        let sealed = s.seal_at(&alice(), TOOL, "step=2", NOW);
        // Flip one character of the body, then of the tag.
        let parts: Vec<&str> = sealed.split('.').collect();
        let flip = |p: &str| {
            let mut c: Vec<char> = p.chars().collect();
            c[2] = if c[2] == 'A' { 'B' } else { 'A' };
            c.into_iter().collect::<String>()
        };
        let body_altered = format!("{}.{}.{}", parts[0], flip(parts[1]), parts[2]);
        let tag_altered = format!("{}.{}.{}", parts[0], parts[1], flip(parts[2]));
        for forged in [body_altered, tag_altered] {
            assert!(s.open_at(&alice(), TOOL, &forged, NOW).is_err(), "{forged}");
        }
        for junk in ["", "step=2", "rs1.", "rs1.AAAA.AAAA", "rs9.x.y"] {
            assert!(s.open_at(&alice(), TOOL, junk, NOW).is_err(), "{junk:?}");
        }
        assert_eq!(
            s.open_at(&alice(), TOOL, "step=2", NOW),
            Err(StateRejected::Malformed)
        );
    }

    #[test]
    fn another_key_cannot_open_it() {
        let sealed = sealer().seal_at(&alice(), TOOL, "step=2", NOW);
        let other = StateSealer::with_key([43u8; 32]).unwrap();
        assert_eq!(
            other.open_at(&alice(), TOOL, &sealed, NOW),
            Err(StateRejected::NotBound)
        );
        let generated = StateSealer::generate().unwrap();
        assert!(generated.open_at(&alice(), TOOL, &sealed, NOW).is_err());
        let own = generated.seal_at(&alice(), TOOL, "step=2", NOW);
        assert_eq!(
            generated.open_at(&alice(), TOOL, &own, NOW).unwrap(),
            "step=2"
        );
    }

    #[test]
    fn it_expires_after_its_ttl() {
        let s = sealer().ttl(Duration::from_secs(60));
        let sealed = s.seal_at(&alice(), TOOL, "step=2", NOW);
        assert_eq!(
            s.open_at(&alice(), TOOL, &sealed, NOW + 59).unwrap(),
            "step=2"
        );
        assert_eq!(
            s.open_at(&alice(), TOOL, &sealed, NOW + 60),
            Err(StateRejected::Expired {
                exp: NOW + 60,
                now: NOW + 60
            })
        );
        // The default is fifteen minutes.
        let sealed = sealer().seal_at(&alice(), TOOL, "x", NOW);
        assert!(sealer().open_at(&alice(), TOOL, &sealed, NOW + 899).is_ok());
        assert!(
            sealer()
                .open_at(&alice(), TOOL, &sealed, NOW + 900)
                .is_err()
        );
    }

    #[test]
    fn keys_rotate_through_a_keyring() {
        let old = StateSealer::with_keyring("old", [("old", [1u8; 32])]).unwrap();
        let sealed = old.seal_at(&alice(), TOOL, "step=2", NOW);
        let both =
            StateSealer::with_keyring("new", [("old", [1u8; 32]), ("new", [2u8; 32])]).unwrap();
        assert_eq!(
            both.open_at(&alice(), TOOL, &sealed, NOW).unwrap(),
            "step=2"
        );
        let fresh = both.seal_at(&alice(), TOOL, "step=3", NOW);
        let retired = StateSealer::with_keyring("new", [("new", [2u8; 32])]).unwrap();
        assert_eq!(
            retired.open_at(&alice(), TOOL, &fresh, NOW).unwrap(),
            "step=3"
        );
        assert_eq!(
            retired.open_at(&alice(), TOOL, &sealed, NOW),
            Err(StateRejected::UnknownKey)
        );
    }

    #[test]
    fn short_keys_and_bad_keyrings_are_refused() {
        assert!(matches!(
            StateSealer::with_key([0u8; 31]),
            Err(SealerKeyError::KeyTooShort {
                minimum: 32,
                actual: 31
            })
        ));
        assert!(matches!(
            StateSealer::with_keyring("missing", [("k", [0u8; 32])]),
            Err(SealerKeyError::Keyring(_))
        ));
        let none: [(&str, [u8; 32]); 0] = [];
        assert!(matches!(
            StateSealer::with_keyring("k", none),
            Err(SealerKeyError::Keyring(_))
        ));
    }

    #[test]
    fn in_place_hooks_seal_and_open_and_leave_none_alone() {
        let s = sealer();
        let mut state = Some("step=2".to_owned());
        s.seal_in_place(&alice(), TOOL, &mut state, NOW);
        let sealed = state.clone().unwrap();
        assert_ne!(sealed, "step=2");
        s.open_in_place(&alice(), TOOL, &mut state, NOW).unwrap();
        assert_eq!(state.as_deref(), Some("step=2"));

        let mut none = None;
        s.seal_in_place(&alice(), TOOL, &mut none, NOW);
        s.open_in_place(&alice(), TOOL, &mut none, NOW).unwrap();
        assert_eq!(none, None);

        let bob = who("https://as.example", Some("bob"), Some("app"));
        let mut replayed = Some(sealed);
        assert_eq!(
            s.open_in_place(&bob, TOOL, &mut replayed, NOW),
            Err(StateRejected::NotBound)
        );
    }

    #[test]
    fn every_rejection_is_one_invalid_params_error() {
        let all = [
            StateRejected::NotBound,
            StateRejected::UnknownKey,
            StateRejected::Expired { exp: 1, now: 2 },
            StateRejected::Malformed,
        ];
        let first = all[0].to_mcp_error();
        assert_eq!(first.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        for r in &all {
            let e = r.to_mcp_error();
            assert_eq!(
                (e.code, &e.message, &e.data),
                (first.code, &first.message, &first.data)
            );
            assert!(r.code().starts_with("request_state_"));
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let text = format!("{:?}", StateSealer::with_key([0xAB; 32]).unwrap());
        assert!(text.contains("redacted"), "{text}");
        assert!(!text.contains("171"), "{text}");
    }
}
