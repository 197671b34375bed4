//! Names from the OAuth token exchange protocol (RFC 8693) that both of its sides use:
//! the grant type a client sends and the token type URNs both ends read and write.
//!
//! The development issuer's token endpoint answers with them and the exchange client in
//! `remote` sends them; they are defined once, here on the ground floor, so neither side
//! imports the other.

/// The RFC 8693 grant type (section 2.1).
pub(crate) const TOKEN_EXCHANGE_GRANT_TYPE: &str =
    "urn:ietf:params:oauth:grant-type:token-exchange";

/// The RFC 8693 token type of an OAuth access token (section 3).
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The RFC 8693 token type of a JWT (section 3).
pub(crate) const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
