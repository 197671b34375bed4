//! [`MultiIssuer`]: several trusted issuers, each token verified only by the verifier of
//! the issuer it names.
//!
//! The token's `iss` is read before any verification, for routing only: the verifier it
//! is routed to checks the signature with that issuer's keys alone and requires the same
//! `iss`, so a token naming issuer A is never checked with issuer B's keys, and a token
//! naming an issuer not configured is refused as [`AuthError::WrongIssuer`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::jws::{decode_object_part, split_compact};
use super::{AuthError, Verifier};
use crate::error::{ConfigError, excerpt};
use crate::principal::Principal;

/// Verifiers for several issuers, one per issuer.
///
/// ```
/// use rmcp_authz::{dev::DevIssuer, token::{MultiIssuer, Verifier}};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = DevIssuer::new("https://a.example")?;
/// let b = DevIssuer::new("https://b.example")?;
/// let verifier = MultiIssuer::new()
///     .issuer(a.verifier("https://mcp.example/mcp").build()?)?
///     .issuer(b.verifier("https://mcp.example/mcp").build()?)?;
/// assert!(verifier.verify(&b.token("https://mcp.example/mcp").mint()?).await.is_ok());
/// assert_eq!(verifier.trusted_issuers(), ["https://a.example", "https://b.example"]);
/// # Ok(()) }
/// ```
#[derive(Default, Clone)]
pub struct MultiIssuer {
    verifiers: Vec<(String, Arc<dyn Verifier>)>,
}

impl fmt::Debug for MultiIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.verifiers.iter().map(|(_, v)| v))
            .finish()
    }
}

impl MultiIssuer {
    /// No issuers yet.
    pub fn new() -> MultiIssuer {
        MultiIssuer::default()
    }

    /// Adds the verifier of one issuer (it must trust exactly one).
    ///
    /// # Errors
    /// [`ConfigError::NotOneIssuer`] when the verifier trusts no issuer or several,
    /// [`ConfigError::DuplicateIssuer`] when its issuer is already configured.
    pub fn issuer(mut self, verifier: impl Verifier + 'static) -> Result<MultiIssuer, ConfigError> {
        let issuers = verifier.trusted_issuers();
        let [issuer] = issuers.as_slice() else {
            return Err(ConfigError::NotOneIssuer { issuers });
        };
        if self.verifiers.iter().any(|(i, _)| i == issuer) {
            return Err(ConfigError::DuplicateIssuer {
                issuer: issuer.clone(),
            });
        }
        self.verifiers.push((issuer.clone(), Arc::new(verifier)));
        Ok(self)
    }
}

#[async_trait]
impl Verifier for MultiIssuer {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let [_, payload, _] = split_compact(token)?;
        let claims = decode_object_part(payload, "payload")?;
        let iss =
            claims
                .get("iss")
                .and_then(Value::as_str)
                .ok_or_else(|| AuthError::MissingClaim {
                    claim: "iss".to_owned(),
                })?;
        match self.verifiers.iter().find(|(i, _)| i == iss) {
            Some((_, verifier)) => verifier.verify(token).await,
            None => Err(AuthError::WrongIssuer {
                expected: self
                    .verifiers
                    .iter()
                    .map(|(i, _)| i.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                found: excerpt(iss),
            }),
        }
    }

    fn resource_uri(&self) -> Option<&str> {
        self.verifiers.first().and_then(|(_, v)| v.resource_uri())
    }

    fn trusted_issuers(&self) -> Vec<String> {
        self.verifiers.iter().map(|(i, _)| i.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::DevIssuer;

    #[tokio::test]
    async fn each_token_goes_to_its_own_issuer_only() {
        let a = DevIssuer::new("https://a.example").unwrap();
        let b = DevIssuer::new("https://b.example").unwrap();
        let rs = "https://rs.example/mcp";
        let multi = MultiIssuer::new()
            .issuer(a.verifier(rs).build().unwrap())
            .unwrap()
            .issuer(b.verifier(rs).build().unwrap())
            .unwrap();
        let from_a = a.token(rs).subject("x").mint().unwrap();
        assert_eq!(
            multi.verify(&from_a).await.unwrap().issuer(),
            "https://a.example"
        );
        // Signed by A's key but claiming B: B's verifier checks it with B's keys only.
        let forged = a
            .token(rs)
            .claim("iss", "https://b.example")
            .mint()
            .unwrap();
        assert!(matches!(
            multi.verify(&forged).await,
            Err(AuthError::UnknownKey { .. } | AuthError::BadSignature { .. })
        ));
        let c = DevIssuer::new("https://c.example").unwrap();
        let from_c = c.token(rs).mint().unwrap();
        assert!(matches!(
            multi.verify(&from_c).await,
            Err(AuthError::WrongIssuer { .. })
        ));
        assert!(matches!(
            multi.verify("garbage").await,
            Err(AuthError::Malformed { .. })
        ));
        assert!(
            MultiIssuer::new()
                .issuer(a.verifier(rs).build().unwrap())
                .unwrap()
                .issuer(a.verifier(rs).build().unwrap())
                .is_err()
        );
    }
}
