//! What both sides of OAuth share, defined once on the ground floor so neither side
//! imports the other: the names of the token exchange protocol (RFC 8693), the grant type
//! a client sends and the token type URNs both ends read and write (the development
//! issuer's token endpoint answers with them, the exchange client in `remote` sends
//! them); how an access token is read from an `Authorization` value (RFC 6750 `Bearer`,
//! RFC 9449 `DPoP`); and
//! [`SubjectToken`], the token a request was authorized with, which the HTTP layer keeps
//! for exchange and the agent side exchanges.

use std::fmt;

use http::HeaderValue;

/// The RFC 8693 grant type (section 2.1).
#[cfg_attr(
    not(any(all(feature = "dev", feature = "http"), feature = "jwks")),
    allow(dead_code)
)]
pub(crate) const TOKEN_EXCHANGE_GRANT_TYPE: &str =
    "urn:ietf:params:oauth:grant-type:token-exchange";

/// The RFC 8693 token type of an OAuth access token (section 3).
#[cfg_attr(
    not(any(all(feature = "dev", feature = "http"), feature = "jwks")),
    allow(dead_code)
)]
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The RFC 8693 token type of a JWT (section 3).
#[cfg_attr(
    not(any(all(feature = "dev", feature = "http"), feature = "jwks")),
    allow(dead_code)
)]
pub(crate) const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// How an `Authorization` value presents its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Bearer` (RFC 6750): whoever holds the token may use it.
    Bearer,
    /// `DPoP` (RFC 9449 section 7.1): the token is bound to a key the client proves it
    /// holds with a `DPoP` proof header.
    Dpop,
}

/// The scheme and token of an `Authorization: Bearer <token>` or `DPoP <token>` value;
/// the scheme is matched without regard to case (RFC 9110 section 11.1). Other schemes
/// give `None`.
pub(crate) fn access_token(value: &[u8]) -> Option<(Scheme, &str)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return None;
    };
    let token = rest.trim_start_matches(' ');
    (!token.is_empty()).then_some((scheme, token))
}

/// The token of an `Authorization: Bearer <token>` value (see [`access_token`]).
#[cfg(test)]
pub(crate) fn bearer_token(value: &[u8]) -> Option<&str> {
    access_token(value)
        .filter(|(scheme, _)| *scheme == Scheme::Bearer)
        .map(|(_, token)| token)
}

/// The access token a Streamable HTTP request was authorized with, kept for one use:
/// exchanging it (RFC 8693) for a token meant for a downstream service, on the caller's
/// behalf (`remote::TokenExchangeClient::exchange_subject`, feature `jwks`; cached by
/// `agent::OnBehalfOf`, feature `agent`).
///
/// The MCP specification forbids token passthrough: the token's audience is this server,
/// and a handler must not send it anywhere else. So the HTTP layer removes the
/// `Authorization` header before rmcp sees the request and keeps the verified token here,
/// in the request's extensions, where [`SubjectToken::of`] finds it; this type has no
/// method that hands out the token, and `Debug` shows only its length. Requests over
/// stdio carry none.
///
/// ```
/// use rmcp::handler::server::tool::Extension;
/// use rmcp_authz::SubjectToken;
///
/// fn downstream(Extension(parts): Extension<http::request::Parts>) {
///     if let Some(subject) = SubjectToken::of(&parts.extensions) {
///         // Exchange `subject` for a token for the downstream service.
///         # let _ = subject;
///     }
/// }
/// ```
#[derive(Clone)]
pub struct SubjectToken(HeaderValue);

impl SubjectToken {
    /// Keeps the `Authorization` value of a request whose token was verified.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn from_authorization(value: HeaderValue) -> SubjectToken {
        SubjectToken(value)
    }

    /// The subject token of a request, from its HTTP extensions (rmcp hands handlers the
    /// request's `http::request::Parts`, whose `extensions` these are).
    pub fn of(extensions: &http::Extensions) -> Option<&SubjectToken> {
        extensions.get::<SubjectToken>()
    }

    /// The token itself, for the exchange request only.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn token(&self) -> &str {
        access_token(self.0.as_bytes()).map_or("", |(_, token)| token)
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectToken(<redacted, {} bytes>)", self.token().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_with_any_case_of_the_scheme() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bEaReR  abc"), Some("abc"));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(&[0xff, 0x20, 0x41]), None);
        assert_eq!(bearer_token(b"DPoP abc"), None);
        assert_eq!(access_token(b"dpop abc"), Some((Scheme::Dpop, "abc")));
        assert_eq!(access_token(b"DPoP "), None);
    }

    #[test]
    fn a_subject_token_shows_only_its_length() {
        let subject = SubjectToken::from_authorization(HeaderValue::from_static("Bearer eyJ.abc"));
        assert_eq!(subject.token(), "eyJ.abc");
        let shown = format!("{subject:?}");
        assert!(
            !shown.contains("eyJ") && shown.contains("7 bytes"),
            "{shown}"
        );
    }
}
