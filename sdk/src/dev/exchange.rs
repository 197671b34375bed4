//! Token exchange at the development issuer (RFC 8693): the rules that turn a subject
//! token, and optionally an actor token, into a new access token for another audience.
//!
//! This module owns [`DevIssuer::exchange`], its request ([`ExchangeRequest`]) and its
//! errors ([`ExchangeError`], carrying the OAuth error code a token endpoint answers with).
//! The HTTP form of the same exchange lives in the `token_endpoint` module (feature `http`).
//!
//! Every rule is listed on [`DevIssuer::exchange`].

use std::fmt;

use serde_json::{Map, Value};

use super::{DevIssuer, random_id};
use crate::principal::Principal;
use crate::token::DEFAULT_MAX_TOKEN_BYTES;
use crate::token::claims::{self, ClaimRules, MAX_DELEGATION_DEPTH};

/// The longest lifetime of an exchanged token, in seconds.
const EXCHANGED_LIFETIME_SECS: i64 = 3600;

/// What to exchange: the input of [`DevIssuer::exchange`].
///
/// `Debug` leaves the tokens out.
///
/// ```
/// use rmcp_authz::dev::ExchangeRequest;
/// # let (user_token, agent_token) = (String::new(), String::new());
/// let request = ExchangeRequest::new(user_token, "https://calendar.example/mcp")
///     .with_actor_token(agent_token)
///     .with_scopes(["calendar:read"]);
/// assert_eq!(request.scope.as_deref(), Some(&["calendar:read".to_owned()][..]));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ExchangeRequest {
    /// The token of the party the new token speaks for (its `sub` becomes the new `sub`).
    pub subject_token: String,
    /// The acting party's own token; its `sub` and `client_id` name the new current actor
    /// (a client's own token may have only a `client_id`). Without it the exchange only
    /// re-scopes the subject token for a new audience.
    pub actor_token: Option<String>,
    /// The target resource the new token is for (its `aud`). Required.
    pub audience: String,
    /// The scopes wanted, each of which the subject token must hold; `None` keeps the
    /// subject token's scopes, an empty list asks for a token without scopes.
    pub scope: Option<Vec<String>>,
    /// The RFC 7638 thumbprint of the key the requester proved it holds with a verified
    /// DPoP proof (RFC 9449 section 5; the token endpoint verifies the `DPoP` header and
    /// sets this, with feature `dpop`), or `None` without one. The new token is bound to
    /// it (`cnf.jkt`); see [`DevIssuer::exchange`] for the binding rules.
    pub dpop_jkt: Option<String>,
}

impl ExchangeRequest {
    /// A request to exchange `subject_token` for a token meant for `audience`, with the
    /// subject token's scopes and no actor.
    pub fn new(subject_token: impl Into<String>, audience: impl Into<String>) -> Self {
        ExchangeRequest {
            subject_token: subject_token.into(),
            actor_token: None,
            audience: audience.into(),
            scope: None,
            dpop_jkt: None,
        }
    }

    /// Sets the actor token.
    #[must_use]
    pub fn with_actor_token(mut self, actor_token: impl Into<String>) -> Self {
        self.actor_token = Some(actor_token.into());
        self
    }

    /// Asks for exactly these scopes.
    #[must_use]
    pub fn with_scopes<S: AsRef<str>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scope = Some(scopes.into_iter().map(|s| s.as_ref().to_owned()).collect());
        self
    }

    /// Says the requester proved, with a verified DPoP proof, that it holds the key whose
    /// RFC 7638 thumbprint is `jkt` ([`DpopProof::jkt`](crate::token::dpop::DpopProof)
    /// with feature `dpop`): the new token is bound to that key.
    #[must_use]
    pub fn with_dpop_jkt(mut self, jkt: impl Into<String>) -> Self {
        self.dpop_jkt = Some(jkt.into());
        self
    }
}

impl fmt::Debug for ExchangeRequest {
    /// Shows the audience and scopes; of the tokens, only whether they are there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("subject_token", &"<redacted>")
            .field(
                "actor_token",
                &self.actor_token.as_ref().map(|_| "<redacted>"),
            )
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("dpop_jkt", &self.dpop_jkt)
            .finish()
    }
}

/// The OAuth error code of a refused exchange (RFC 6749 section 5.2, RFC 8693
/// section 2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExchangeErrorCode {
    /// `invalid_request`: a parameter is missing, repeated, malformed or unsupported.
    InvalidRequest,
    /// `invalid_grant`: the subject or actor token is not acceptable.
    InvalidGrant,
    /// `invalid_scope`: a requested scope is malformed or not held by the subject token.
    InvalidScope,
    /// `invalid_target`: the issuer will not mint a token for the requested audience.
    InvalidTarget,
    /// `unsupported_grant_type`: the grant type is not token exchange.
    UnsupportedGrantType,
    /// `invalid_dpop_proof` (RFC 9449 section 5): the `DPoP` proof is invalid, or missing
    /// where a bound token is presented.
    InvalidDpopProof,
    /// `server_error`: the issuer failed (the token could not be signed).
    ServerError,
}

impl ExchangeErrorCode {
    /// The code as it appears in the `error` member of an error response.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeErrorCode::InvalidRequest => "invalid_request",
            ExchangeErrorCode::InvalidGrant => "invalid_grant",
            ExchangeErrorCode::InvalidScope => "invalid_scope",
            ExchangeErrorCode::InvalidTarget => "invalid_target",
            ExchangeErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ExchangeErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ExchangeErrorCode::ServerError => "server_error",
        }
    }

    /// The HTTP status a token endpoint answers with: 500 for `server_error`, else 400.
    pub fn http_status(self) -> u16 {
        match self {
            ExchangeErrorCode::ServerError => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for ExchangeErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token exchange was refused: an OAuth error code and a description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token exchange refused ({code}): {message}")]
pub struct ExchangeError {
    code: ExchangeErrorCode,
    message: String,
}

impl ExchangeError {
    /// An error with `code` and a human-readable `message`.
    pub fn new(code: ExchangeErrorCode, message: impl Into<String>) -> Self {
        ExchangeError {
            code,
            message: message.into(),
        }
    }

    /// The error code.
    pub fn code(&self) -> ExchangeErrorCode {
        self.code
    }

    /// The error code as the `error` member of an error response (`invalid_grant`, ...).
    pub fn error_code(&self) -> &'static str {
        self.code.as_str()
    }

    /// What was wrong, for the `error_description` member.
    pub fn message(&self) -> &str {
        &self.message
    }
}

fn invalid_request(message: impl Into<String>) -> ExchangeError {
    ExchangeError::new(ExchangeErrorCode::InvalidRequest, message)
}

fn invalid_grant(message: impl Into<String>) -> ExchangeError {
    ExchangeError::new(ExchangeErrorCode::InvalidGrant, message)
}

fn invalid_scope(message: impl Into<String>) -> ExchangeError {
    ExchangeError::new(ExchangeErrorCode::InvalidScope, message)
}

/// A minted exchange result, with what a token endpoint reports about it.
#[derive(Debug)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) expires_in: i64,
    pub(crate) scopes: Vec<String>,
    /// Bound to a DPoP key (`cnf.jkt`): the answer's `token_type` is `DPoP`.
    pub(crate) dpop_bound: bool,
}

impl DevIssuer {
    /// Exchanges tokens (RFC 8693): a new access token for `request.audience` that speaks
    /// for the subject token's user, with the actor token's party added as the current
    /// actor of the delegation chain.
    ///
    /// The rules, in the order they are checked:
    ///
    /// 1. The audience is present (`invalid_request`) and a single plain identifier: no
    ///    whitespace, control characters or URI fragment (`invalid_target`).
    /// 2. The subject token, and the actor token when there is one, are access tokens of
    ///    *this* issuer: signed by its key with its algorithm, `typ: at+jwt`, `iss` equal
    ///    to this issuer, not expired, with no leeway since the issuer judges its own clock
    ///    (`invalid_grant`). The subject token has a `sub`; the actor token a `sub` or a
    ///    `client_id` (RFC 8693 section 4.1 lets either identify an actor, and an agent's
    ///    own client credentials token may name only the client). Their own `aud` is not checked: a token given to the
    ///    exchange is presented to the authorization server, not used at its audience, and
    ///    the very point of the exchange is to obtain a token for a different audience.
    /// 3. The actor token is not itself delegated (no `act`): it is the actor's own token,
    ///    and a chain hidden inside it would vanish from the new token (`invalid_grant`).
    /// 4. When the subject token has a `may_act` claim (RFC 8693 section 4.4: an object,
    ///    or, as an extension, an array of objects), the actor token matches it: every
    ///    member of one of those objects (`sub`, `iss`, `client_id`, ...) equals, as a
    ///    string, the actor token's claim of the same name (`invalid_grant`). `may_act`
    ///    says who may be added as an actor; an exchange without an actor token adds
    ///    nobody, so `may_act` does not refuse it.
    /// 5. DPoP binding (RFC 9449; a token is bound when it has `cnf.jkt`, and the proof is
    ///    [`dpop_jkt`](ExchangeRequest::dpop_jkt), the key the requester proved):
    ///    - a bound actor token needs a proof (`invalid_dpop_proof`) of its own key
    ///      (`invalid_grant`): the requester is the actor, and must hold the actor's key;
    ///    - a bound subject token needs a proof (`invalid_dpop_proof`): exchanging it
    ///      without one would turn a bound token into a bearer token;
    ///    - without an actor token, that proof must be of the subject token's own key
    ///      (`invalid_grant`): only its holder may re-scope it;
    ///    - with an actor token, the proof may be of another key (the actor's, proven
    ///      above when its token is bound) only when the subject token has `may_act`
    ///      (which rule 4 has matched to the actor): it was handed to that actor, whose
    ///      key the new token is bound to. Without `may_act` it is `invalid_grant`: a
    ///      thief holding a bound token cannot re-bind it by adding an actor token.
    ///
    ///    Whenever a proof is present, the new token is bound to its key (`cnf.jkt`), and
    ///    the token endpoint answers `token_type: DPoP`; without one, it is a bearer token.
    /// 6. Scopes: without [`scope`](ExchangeRequest::scope) the new token has the subject
    ///    token's scopes; with it, exactly the ones asked for, each of which the subject
    ///    token must hold. A scope it lacks is refused with `invalid_scope`, never silently
    ///    dropped, so a caller cannot mistake a narrower token for the one it asked for,
    ///    and a token is never widened.
    /// 7. The delegation chain stays within the depth verifiers accept (`invalid_grant`).
    ///
    /// The new token has `sub` from the subject token; `client_id` from the actor token
    /// when it has one, else from the subject token; `act` naming the actor (its `sub` and
    /// its `client_id`, whichever it has) with the subject token's own `act` nested inside, so the
    /// chain grows by one with the current actor outermost; `aud` the requested audience;
    /// `iat` now; `exp` the earlier of the subject token's `exp` and one hour from now; a
    /// fresh `jti`; `typ: at+jwt`. Other claims of the subject token (`may_act` included)
    /// are not carried over. Without an actor token the subject token's `act` is kept as it
    /// is: re-scoping a delegated token never hides its chain.
    ///
    /// ```
    /// use rmcp_authz::dev::{DevIssuer, ExchangeRequest};
    /// let issuer = DevIssuer::new("https://auth.example")?;
    /// // Alice's token, delegated to an orchestrator, for the first MCP server.
    /// let user = issuer.token("https://agents.example/mcp").subject("alice")
    ///     .scopes(["notes:read", "notes:write"]).actor("orchestrator").mint()?;
    /// // The research agent's own token.
    /// let agent = issuer.token("https://auth.example").subject("research-agent")
    ///     .client_id("research-agent").mint()?;
    /// let request = ExchangeRequest::new(user, "https://notes.example/mcp")
    ///     .with_actor_token(agent)
    ///     .with_scopes(["notes:read"]);
    /// let token = issuer.exchange(&request)?;
    ///
    /// let who = issuer.verifier("https://notes.example/mcp").build()?.verify_sync(&token)?;
    /// assert_eq!(who.subject(), Some("alice"));
    /// assert_eq!(who.agent(), Some("research-agent"));
    /// let chain: Vec<_> = who.delegation_chain().iter().map(|a| a.id()).collect();
    /// assert_eq!(chain, ["research-agent", "orchestrator"]);
    /// assert_eq!(who.scopes(), ["notes:read"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// An [`ExchangeError`] whose [`code`](ExchangeError::code) is `invalid_request` (no
    /// subject token or audience), `invalid_target` (an audience that is not a single plain
    /// identifier), `invalid_grant` (a token that is not a valid, unexpired access token of
    /// this issuer, an actor `may_act` does not name, a delegated actor token, a chain too
    /// deep, a DPoP-bound token presented with a proof of another key), `invalid_scope` (a
    /// malformed scope or one the subject token lacks), `invalid_dpop_proof` (a bound
    /// token presented without a proof) or `server_error` (signing failed).
    pub fn exchange(&self, request: &ExchangeRequest) -> Result<String, ExchangeError> {
        self.exchange_issued(request)
            .map(|issued| issued.access_token)
    }

    /// [`DevIssuer::exchange`], with the lifetime and scopes of the new token.
    pub(crate) fn exchange_issued(
        &self,
        request: &ExchangeRequest,
    ) -> Result<Issued, ExchangeError> {
        check_audience(&request.audience)?;
        let now = self.clock.now_unix();
        let subject = self.presented(&request.subject_token, "subject", now)?;
        let actor = match &request.actor_token {
            Some(token) => Some(self.presented(token, "actor", now)?),
            None => None,
        };
        if let Some(actor) = &actor {
            if actor_name(actor).is_none() {
                return Err(invalid_grant(
                    "the actor token is refused: it names no actor (it has neither a sub nor a client_id); present the agent's own token",
                ));
            }
            if actor.is_delegated() {
                return Err(invalid_grant(
                    "the actor token is itself delegated (it has an act claim); present the actor's own token",
                ));
            }
            if let Some(may_act) = subject.claim("may_act") {
                check_may_act(may_act, actor)?;
            }
        }
        check_binding(&subject, actor.as_ref(), request.dpop_jkt.as_deref())?;
        let scopes = granted_scopes(&subject, request.scope.as_deref())?;

        // Validation required `sub` on the subject token.
        let sub = subject.subject().unwrap_or_default();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("sub".into(), sub.into());
        claims.insert("aud".into(), request.audience.clone().into());
        let client_id = actor
            .as_ref()
            .and_then(Principal::client_id)
            .or_else(|| subject.client_id());
        if let Some(client_id) = client_id {
            claims.insert("client_id".into(), client_id.into());
        }
        if !scopes.is_empty() {
            claims.insert("scope".into(), scopes.join(" ").into());
        }
        match &actor {
            Some(actor) => {
                if subject.delegation_chain().len() >= MAX_DELEGATION_DEPTH {
                    return Err(invalid_grant(format!(
                        "the delegation chain would be longer than {MAX_DELEGATION_DEPTH} actors"
                    )));
                }
                let mut act = Map::new();
                if let Some(sub) = actor.subject() {
                    act.insert("sub".into(), sub.into());
                }
                if let Some(client_id) = actor.client_id() {
                    act.insert("client_id".into(), client_id.into());
                }
                if let Some(earlier) = subject.claim("act") {
                    act.insert("act".into(), earlier.clone());
                }
                claims.insert("act".into(), Value::Object(act));
            }
            None => {
                if let Some(act) = subject.claim("act") {
                    claims.insert("act".into(), act.clone());
                }
            }
        }
        let exp = subject
            .expires_at()
            .min(now.saturating_add(EXCHANGED_LIFETIME_SECS));
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), exp.into());
        claims.insert("jti".into(), random_id().into());
        if let Some(jkt) = &request.dpop_jkt {
            claims.insert("cnf".into(), serde_json::json!({ "jkt": jkt }));
        }
        let access_token = self
            .mint_claims(&Value::Object(claims), Some("at+jwt"))
            .map_err(|e| ExchangeError::new(ExchangeErrorCode::ServerError, e.to_string()))?;
        Ok(Issued {
            access_token,
            expires_in: exp.saturating_sub(now),
            scopes,
            dpop_bound: request.dpop_jkt.is_some(),
        })
    }

    /// Verifies a token presented to the exchange: an unexpired access token of this
    /// issuer, whatever its audience; the subject token must have a `sub`.
    fn presented(&self, token: &str, which: &str, now: i64) -> Result<Principal, ExchangeError> {
        if token.is_empty() {
            return Err(invalid_request(format!("the {which} token is missing")));
        }
        let refused =
            |reason: String| invalid_grant(format!("the {which} token is refused: {reason}"));
        if token.len() > DEFAULT_MAX_TOKEN_BYTES {
            return Err(refused(format!(
                "it is larger than {DEFAULT_MAX_TOKEN_BYTES} bytes"
            )));
        }
        let jws = self
            .key_set()
            .verify_jws(token, &[self.alg])
            .map_err(|e| refused(format!("it is not a token of this issuer: {e}")))?;
        let typ = jws.typ().map(str::to_ascii_lowercase);
        if !matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
            return Err(refused(
                "it is not an access token (typ is not at+jwt)".to_owned(),
            ));
        }
        let claims = crate::json::parse_object(jws.payload())
            .map_err(|e| refused(format!("its payload is not a JSON object: {e}")))?;
        // The audience is deliberately not checked (see the module documentation):
        // validation is asked to accept the token's own first audience.
        let audience = match claims.get("aud") {
            Some(Value::String(aud)) => aud.clone(),
            Some(Value::Array(auds)) => auds
                .first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        let rules = ClaimRules {
            issuer: self.issuer.clone(),
            audience,
            leeway_secs: 0,
            // An actor may be named by its `client_id` alone (checked by the caller).
            required: if which == "subject" {
                ["iss", "aud", "exp", "sub"].map(String::from).to_vec()
            } else {
                ["iss", "aud", "exp"].map(String::from).to_vec()
            },
        };
        claims::validate(claims, &rules, now).map_err(|e| refused(e.to_string()))
    }
}

/// The audience must be there, and be one identifier a token's `aud` can hold.
fn check_audience(audience: &str) -> Result<(), ExchangeError> {
    if audience.is_empty() {
        return Err(invalid_request("the audience (resource) is required"));
    }
    if audience
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ExchangeError::new(
            ExchangeErrorCode::InvalidTarget,
            "the audience contains whitespace or control characters",
        ));
    }
    if audience.contains('#') {
        return Err(ExchangeError::new(
            ExchangeErrorCode::InvalidTarget,
            "the audience has a fragment, which a resource indicator must not (RFC 8707)",
        ));
    }
    Ok(())
}

/// The `cnf.jkt` a token is bound to, if any.
fn bound_jkt(token: &Principal) -> Option<&str> {
    token
        .claim("cnf")
        .and_then(|cnf| cnf.get("jkt"))
        .and_then(Value::as_str)
}

/// The DPoP binding rules of [`DevIssuer::exchange`] (rule 5).
fn check_binding(
    subject: &Principal,
    actor: Option<&Principal>,
    proof: Option<&str>,
) -> Result<(), ExchangeError> {
    let missing = |which: &str| {
        ExchangeError::new(
            ExchangeErrorCode::InvalidDpopProof,
            format!(
                "the {which} token is DPoP-bound: send a DPoP proof of its key with the request"
            ),
        )
    };
    if let Some(jkt) = actor.and_then(bound_jkt) {
        let proof = proof.ok_or_else(|| missing("actor"))?;
        if proof != jkt {
            return Err(invalid_grant(
                "the actor token is DPoP-bound to another key than the DPoP proof's: the requester must hold the actor's key",
            ));
        }
    }
    if let Some(jkt) = bound_jkt(subject) {
        let proof = proof.ok_or_else(|| missing("subject"))?;
        // Another key than the subject's: only an actor the subject token names in
        // `may_act` (checked by rule 4) may have been handed it; anyone else holding a
        // bound token without its key stole it.
        if proof != jkt && (actor.is_none() || subject.claim("may_act").is_none()) {
            return Err(invalid_grant(
                "the subject token is DPoP-bound to another key than the DPoP proof's: only its holder, or an actor its may_act names, may exchange it",
            ));
        }
    }
    Ok(())
}

/// The actor token must match `may_act`: one object (or one of an array of objects) all
/// of whose members equal the actor token's claims of the same names.
fn check_may_act(may_act: &Value, actor: &Principal) -> Result<(), ExchangeError> {
    let matches = |allowed: &Value| match allowed {
        Value::Object(members) => {
            !members.is_empty()
                && members.iter().all(|(name, value)| {
                    value.as_str().is_some_and(|value| {
                        actor.claim(name).and_then(Value::as_str) == Some(value)
                    })
                })
        }
        _ => false,
    };
    let allowed = match may_act {
        Value::Object(_) => matches(may_act),
        Value::Array(items) => items.iter().any(matches),
        _ => {
            return Err(invalid_grant(
                "the subject token's may_act claim is not an object",
            ));
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(invalid_grant(format!(
            "the subject token's may_act does not allow actor {:?} to act for it",
            actor_name(actor).unwrap_or_default()
        )))
    }
}

/// What names the actor token's party, as the new token's `act` will: its `sub`, else its
/// client (`client_id`, else `azp`).
fn actor_name(actor: &Principal) -> Option<&str> {
    actor.subject().or_else(|| actor.client_id())
}

/// The scopes of the new token: the subject token's, or the requested ones when every one
/// of them is held by the subject token.
fn granted_scopes(
    subject: &Principal,
    requested: Option<&[String]>,
) -> Result<Vec<String>, ExchangeError> {
    let Some(requested) = requested else {
        return Ok(subject.scopes().to_vec());
    };
    let mut granted: Vec<String> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for scope in requested {
        if !is_scope_token(scope) {
            return Err(invalid_scope(format!(
                "{scope:?} is not a scope (RFC 6749 section 3.3: visible ASCII, no spaces, quotes or backslashes)"
            )));
        }
        if !subject.has_scope(scope) {
            if !missing.contains(&scope.as_str()) {
                missing.push(scope);
            }
        } else if !granted.contains(scope) {
            granted.push(scope.clone());
        }
    }
    if !missing.is_empty() {
        return Err(invalid_scope(format!(
            "the subject token does not hold {}; an exchange can only narrow scopes",
            missing.join(" ")
        )));
    }
    Ok(granted)
}

/// RFC 6749 section 3.3: `1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;

    const ISS: &str = "https://as.example";
    const FIRST: &str = "https://agents.example/mcp";
    const TARGET: &str = "https://notes.example/mcp";

    fn issuer() -> DevIssuer {
        DevIssuer::new(ISS).unwrap()
    }

    fn user_token(issuer: &DevIssuer) -> String {
        issuer
            .token(FIRST)
            .subject("alice")
            .client_id("chat-app")
            .scopes(["notes:read", "notes:write", "calendar:read"])
            .mint()
            .unwrap()
    }

    fn agent_token(issuer: &DevIssuer, name: &str) -> String {
        issuer
            .token(ISS)
            .subject(name)
            .client_id(format!("{name}-client"))
            .mint()
            .unwrap()
    }

    fn verify(issuer: &DevIssuer, token: &str) -> Principal {
        issuer
            .verifier(TARGET)
            .build()
            .unwrap()
            .verify_sync(token)
            .unwrap()
    }

    fn chain(p: &Principal) -> Vec<&str> {
        p.delegation_chain().iter().map(|a| a.id()).collect()
    }

    #[test]
    fn each_exchange_adds_the_actor_outermost() {
        let issuer = issuer();
        let first = issuer
            .exchange(
                &ExchangeRequest::new(user_token(&issuer), FIRST)
                    .with_actor_token(agent_token(&issuer, "orchestrator")),
            )
            .unwrap();
        let second = issuer
            .exchange(
                &ExchangeRequest::new(first, TARGET)
                    .with_actor_token(agent_token(&issuer, "research-agent")),
            )
            .unwrap();
        let p = verify(&issuer, &second);
        assert_eq!(p.subject(), Some("alice"));
        assert_eq!(chain(&p), ["research-agent", "orchestrator"]);
        assert_eq!(p.agent(), Some("research-agent"));
        assert_eq!(p.client_id(), Some("research-agent-client"));
        assert_eq!(
            p.delegation_chain()[0].client_id(),
            Some("research-agent-client")
        );
        assert_eq!(p.audiences(), [TARGET]);
        assert!(p.claim("may_act").is_none());
        assert_eq!(
            p.claim("act").unwrap(),
            &json!({
                "sub": "research-agent",
                "client_id": "research-agent-client",
                "act": {"sub": "orchestrator", "client_id": "orchestrator-client"}
            })
        );
    }

    #[test]
    fn an_existing_chain_minted_by_the_builder_is_extended() {
        let issuer = issuer();
        let delegated = issuer
            .token(FIRST)
            .subject("alice")
            .scopes(["notes:read"])
            .actor("orchestrator")
            .actor("gateway")
            .mint()
            .unwrap();
        let token = issuer
            .exchange(
                &ExchangeRequest::new(delegated, TARGET)
                    .with_actor_token(agent_token(&issuer, "research-agent")),
            )
            .unwrap();
        assert_eq!(
            chain(&verify(&issuer, &token)),
            ["research-agent", "orchestrator", "gateway"]
        );
    }

    #[test]
    fn without_an_actor_token_no_actor_is_added_and_the_chain_is_kept() {
        let issuer = issuer();
        let plain = issuer
            .exchange(&ExchangeRequest::new(user_token(&issuer), TARGET))
            .unwrap();
        let p = verify(&issuer, &plain);
        assert!(!p.is_delegated());
        assert_eq!(p.client_id(), Some("chat-app"));
        assert_eq!(p.scopes(), ["notes:read", "notes:write", "calendar:read"]);

        let delegated = issuer.token(FIRST).actor("orchestrator").mint().unwrap();
        let token = issuer
            .exchange(&ExchangeRequest::new(delegated, TARGET))
            .unwrap();
        assert_eq!(chain(&verify(&issuer, &token)), ["orchestrator"]);
    }

    #[test]
    fn may_act_admits_the_named_actor_only() {
        let issuer = issuer();
        let user = issuer
            .token(FIRST)
            .subject("alice")
            .claim("may_act", json!({"sub": "research-agent", "iss": ISS}))
            .mint()
            .unwrap();
        let allowed = ExchangeRequest::new(user.clone(), TARGET)
            .with_actor_token(agent_token(&issuer, "research-agent"));
        assert_eq!(
            chain(&verify(&issuer, &issuer.exchange(&allowed).unwrap())),
            ["research-agent"]
        );

        let other = ExchangeRequest::new(user.clone(), TARGET)
            .with_actor_token(agent_token(&issuer, "mallory-agent"));
        let err = issuer.exchange(&other).unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
        assert!(err.message().contains("may_act"), "{err}");

        // Without an actor token nobody is added, so may_act has nothing to refuse.
        assert!(issuer.exchange(&ExchangeRequest::new(user, TARGET)).is_ok());
    }

    #[test]
    fn may_act_lists_and_client_ids_are_matched_member_by_member() {
        let issuer = issuer();
        let user = issuer
            .token(FIRST)
            .claim(
                "may_act",
                json!([{"sub": "planner"}, {"sub": "research-agent", "client_id": "trusted"}]),
            )
            .mint()
            .unwrap();
        let exchange = |actor: String| {
            issuer.exchange(&ExchangeRequest::new(user.clone(), TARGET).with_actor_token(actor))
        };
        assert!(exchange(agent_token(&issuer, "planner")).is_ok());
        // Right sub, wrong client_id.
        assert!(exchange(agent_token(&issuer, "research-agent")).is_err());
        let trusted = issuer
            .token(ISS)
            .subject("research-agent")
            .client_id("trusted")
            .mint()
            .unwrap();
        assert!(exchange(trusted).is_ok());

        let odd = issuer
            .token(FIRST)
            .claim("may_act", "planner")
            .mint()
            .unwrap();
        let err = issuer
            .exchange(
                &ExchangeRequest::new(odd, TARGET)
                    .with_actor_token(agent_token(&issuer, "planner")),
            )
            .unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
    }

    #[test]
    fn may_act_naming_only_a_client_id_admits_that_clients_own_token() {
        let issuer = issuer();
        let user = issuer
            .token(FIRST)
            .subject("alice")
            .claim("may_act", json!({"client_id": "research-app"}))
            .mint()
            .unwrap();
        // Client credentials tokens: a client acting for itself, no user, so no `sub`.
        let client = |id: Option<&str>| {
            let t = issuer.token(ISS).without("sub").without("client_id");
            match id {
                Some(id) => t.client_id(id),
                None => t,
            }
            .mint()
            .unwrap()
        };
        let exchange = |actor: String| {
            issuer.exchange(&ExchangeRequest::new(user.clone(), TARGET).with_actor_token(actor))
        };
        let p = verify(&issuer, &exchange(client(Some("research-app"))).unwrap());
        assert_eq!(p.subject(), Some("alice"));
        assert_eq!(p.agent(), Some("research-app"));
        assert_eq!(
            p.claim("act").unwrap(),
            &json!({"client_id": "research-app"})
        );

        let err = exchange(client(Some("scraper"))).unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
        assert!(err.message().contains("\"scraper\""), "{err}");
        // A token that names no one cannot be an actor.
        let err = exchange(client(None)).unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
    }

    #[test]
    fn scopes_are_narrowed_never_widened() {
        let issuer = issuer();
        let narrowed = issuer
            .exchange(
                &ExchangeRequest::new(user_token(&issuer), TARGET)
                    .with_scopes(["notes:read", "notes:read"]),
            )
            .unwrap();
        assert_eq!(verify(&issuer, &narrowed).scopes(), ["notes:read"]);

        let widened =
            ExchangeRequest::new(narrowed, TARGET).with_scopes(["notes:read", "notes:write"]);
        let err = issuer.exchange(&widened).unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidScope);
        assert_eq!(err.error_code(), "invalid_scope");
        assert!(err.message().contains("notes:write"), "{err}");

        let malformed = ExchangeRequest::new(user_token(&issuer), TARGET)
            .with_scopes(["notes:read notes:write"]);
        assert_eq!(
            issuer.exchange(&malformed).unwrap_err().code(),
            ExchangeErrorCode::InvalidScope
        );

        let none = issuer
            .exchange(
                &ExchangeRequest::new(user_token(&issuer), TARGET)
                    .with_scopes(Vec::<String>::new()),
            )
            .unwrap();
        let p = verify(&issuer, &none);
        assert!(p.scopes().is_empty());
        assert!(p.claim("scope").is_none());
    }

    #[test]
    fn expired_tokens_are_refused_and_lifetimes_shortened() {
        let clock = Arc::new(ManualClock::new(2_000_000_000));
        let issuer = issuer().clock(clock.clone());
        let user = issuer
            .token(FIRST)
            .expires_in(Duration::from_secs(7200))
            .mint()
            .unwrap();
        let token = issuer
            .exchange(&ExchangeRequest::new(user.clone(), TARGET))
            .unwrap();
        let p = verify(&issuer, &token);
        assert_eq!(p.expires_at(), 2_000_000_000 + 3600, "at most an hour");
        assert_eq!(p.issued_at(), Some(2_000_000_000));

        clock.advance(Duration::from_secs(7000));
        let issued = issuer
            .exchange_issued(&ExchangeRequest::new(user.clone(), TARGET))
            .unwrap();
        assert_eq!(issued.expires_in, 200, "never past the subject token");

        clock.advance(Duration::from_secs(200));
        let err = issuer
            .exchange(&ExchangeRequest::new(user, TARGET))
            .unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
        assert!(err.message().contains("expired"), "{err}");

        let fresh = issuer.token(FIRST).mint().unwrap();
        let stale_actor = issuer
            .token(ISS)
            .subject("agent")
            .expires_in(Duration::ZERO)
            .mint()
            .unwrap();
        let err = issuer
            .exchange(&ExchangeRequest::new(fresh, TARGET).with_actor_token(stale_actor))
            .unwrap_err();
        assert!(err.message().contains("actor token"), "{err}");
    }

    #[test]
    fn tokens_of_other_issuers_are_refused() {
        let issuer = issuer();
        // Another key, even under the same issuer name.
        let impostor = DevIssuer::new(ISS).unwrap();
        let foreign = user_token(&impostor);
        let err = issuer
            .exchange(&ExchangeRequest::new(foreign, TARGET))
            .unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
        assert!(err.message().contains("subject token"), "{err}");

        let err = issuer
            .exchange(
                &ExchangeRequest::new(user_token(&issuer), TARGET)
                    .with_actor_token(agent_token(&impostor, "research-agent")),
            )
            .unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
        assert!(err.message().contains("actor token"), "{err}");

        // This issuer's key, another issuer's name.
        let renamed = issuer
            .token(FIRST)
            .claim("iss", "https://other.example")
            .mint()
            .unwrap();
        assert!(
            issuer
                .exchange(&ExchangeRequest::new(renamed, TARGET))
                .is_err()
        );
    }

    #[test]
    fn only_access_tokens_of_plain_actors_are_exchanged() {
        let issuer = issuer();
        let id_token = issuer.token(FIRST).typ(Some("JWT")).mint().unwrap();
        assert_eq!(
            issuer
                .exchange(&ExchangeRequest::new(id_token, TARGET))
                .unwrap_err()
                .code(),
            ExchangeErrorCode::InvalidGrant
        );
        let delegated_actor = issuer
            .token(ISS)
            .subject("research-agent")
            .actor("hidden")
            .mint()
            .unwrap();
        let err = issuer
            .exchange(
                &ExchangeRequest::new(user_token(&issuer), TARGET)
                    .with_actor_token(delegated_actor),
            )
            .unwrap_err();
        assert!(err.message().contains("itself delegated"), "{err}");
    }

    #[test]
    fn requests_without_a_usable_audience_or_token_are_refused() {
        let issuer = issuer();
        let code = |r: ExchangeRequest| issuer.exchange(&r).unwrap_err().code();
        assert_eq!(
            code(ExchangeRequest::new(user_token(&issuer), "")),
            ExchangeErrorCode::InvalidRequest
        );
        assert_eq!(
            code(ExchangeRequest::new(
                user_token(&issuer),
                "https://a.example/#x"
            )),
            ExchangeErrorCode::InvalidTarget
        );
        assert_eq!(
            code(ExchangeRequest::new(user_token(&issuer), "a b")),
            ExchangeErrorCode::InvalidTarget
        );
        assert_eq!(
            code(ExchangeRequest::new("", TARGET)),
            ExchangeErrorCode::InvalidRequest
        );
        assert_eq!(
            code(ExchangeRequest::new("not.a.token", TARGET)),
            ExchangeErrorCode::InvalidGrant
        );
    }

    #[test]
    fn debug_leaves_the_tokens_out() {
        let request =
            ExchangeRequest::new("secret-subject", TARGET).with_actor_token("secret-actor");
        let shown = format!("{request:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains(TARGET));
    }

    fn cnf_jkt(p: &Principal) -> Option<&str> {
        p.claim("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str)
    }

    #[test]
    fn a_proof_binds_the_new_token_to_its_key() {
        let issuer = issuer();
        let request = ExchangeRequest::new(user_token(&issuer), TARGET)
            .with_actor_token(agent_token(&issuer, "agent"))
            .with_dpop_jkt("agent-key");
        let issued = issuer.exchange_issued(&request).unwrap();
        assert!(issued.dpop_bound);
        assert_eq!(
            cnf_jkt(&verify(&issuer, &issued.access_token)),
            Some("agent-key")
        );
        // Without a proof, a bearer token.
        let request = ExchangeRequest::new(user_token(&issuer), TARGET);
        let issued = issuer.exchange_issued(&request).unwrap();
        assert!(!issued.dpop_bound);
        assert_eq!(cnf_jkt(&verify(&issuer, &issued.access_token)), None);
    }

    #[test]
    fn a_bound_subject_token_is_never_exchanged_without_a_proof() {
        let issuer = issuer();
        let bound = issuer
            .token(FIRST)
            .subject("alice")
            .scopes(["notes:read"])
            .dpop_bound("alice-key")
            .mint()
            .unwrap();
        let err = issuer
            .exchange(&ExchangeRequest::new(bound.clone(), TARGET))
            .unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidDpopProof);
        assert!(
            err.message().contains("subject token is DPoP-bound"),
            "{err}"
        );
        let with_actor = ExchangeRequest::new(bound.clone(), TARGET)
            .with_actor_token(agent_token(&issuer, "agent"));
        assert_eq!(
            issuer.exchange(&with_actor).unwrap_err().code(),
            ExchangeErrorCode::InvalidDpopProof
        );
        // Self exchange: only the holder of the subject's key.
        let own = ExchangeRequest::new(bound.clone(), TARGET).with_dpop_jkt("alice-key");
        let token = issuer.exchange(&own).unwrap();
        assert_eq!(cnf_jkt(&verify(&issuer, &token)), Some("alice-key"));
        let other = ExchangeRequest::new(bound.clone(), TARGET).with_dpop_jkt("mallory-key");
        let err = issuer.exchange(&other).unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
        assert!(err.message().contains("only its holder"), "{err}");
        // Presented with an actor token the subject token does not name (may_act): a thief
        // adding an actor token of its own cannot re-bind it to its key.
        let stolen = with_actor.with_dpop_jkt("mallory-key");
        let err = issuer.exchange(&stolen).unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
        assert!(err.message().contains("may_act"), "{err}");
        // Handed to the actor its may_act names, which binds the new token to its own key.
        let named = issuer
            .token(FIRST)
            .subject("alice")
            .scopes(["notes:read"])
            .dpop_bound("alice-key")
            .claim("may_act", json!({"sub": "agent"}))
            .mint()
            .unwrap();
        let handed = ExchangeRequest::new(named, TARGET)
            .with_actor_token(agent_token(&issuer, "agent"))
            .with_dpop_jkt("agent-key");
        let token = issuer.exchange(&handed).unwrap();
        assert_eq!(cnf_jkt(&verify(&issuer, &token)), Some("agent-key"));
    }

    #[test]
    fn a_bound_actor_token_needs_a_proof_of_its_own_key() {
        let issuer = issuer();
        let actor = issuer
            .token(ISS)
            .subject("agent")
            .dpop_bound("agent-key")
            .mint()
            .unwrap();
        let request =
            ExchangeRequest::new(user_token(&issuer), TARGET).with_actor_token(actor.clone());
        let err = issuer.exchange(&request).unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidDpopProof);
        assert_eq!(err.error_code(), "invalid_dpop_proof");
        let stolen = request.clone().with_dpop_jkt("thief-key");
        let err = issuer.exchange(&stolen).unwrap_err();
        assert_eq!(err.code(), ExchangeErrorCode::InvalidGrant);
        assert!(err.message().contains("must hold the actor's key"), "{err}");
        let token = issuer
            .exchange(&request.with_dpop_jkt("agent-key"))
            .unwrap();
        assert_eq!(cnf_jkt(&verify(&issuer, &token)), Some("agent-key"));
    }
}
