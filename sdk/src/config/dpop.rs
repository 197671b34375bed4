//! The `[dpop]` section: DPoP-bound tokens over HTTP (feature `dpop`, RFC 9449).
//!
//! ```toml
//! [dpop]
//! required = false                 # true: bearer tokens are refused
//! algorithms = ["ES256", "EdDSA"]  # the proof algorithms (default: ES256 ES384 EdDSA PS256 RS256)
//! window_secs = 60                 # how far a proof's iat may be from now
//! replay_capacity = 1000000        # proofs remembered against replay
//! nonce_lifetime_secs = 300        # require server nonces this fresh (default: none)
//! nonce_secret_env = "DPOP_NONCE_SECRET"  # 64 hex digits shared by replicas
//! ```
//!
//! The section turns DPoP on ([`AuthzBuilder::dpop`](crate::AuthzBuilder::dpop)); rules
//! require it with `require_dpop`.

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigFileError, Locator};

/// The section as written.
#[derive(Deserialize)]
#[cfg_attr(not(feature = "dpop"), allow(dead_code))]
#[serde(deny_unknown_fields)]
pub(super) struct DpopSection {
    required: Option<bool>,
    algorithms: Option<Spanned<Vec<String>>>,
    window_secs: Option<Spanned<u64>>,
    replay_capacity: Option<Spanned<u64>>,
    nonce_lifetime_secs: Option<Spanned<u64>>,
    nonce_secret_env: Option<Spanned<String>>,
}

/// What the section builds: the proof verifier, and whether bearer tokens are refused.
#[cfg(feature = "dpop")]
#[derive(Debug)]
pub(super) struct DpopSettings {
    pub(super) verifier: crate::token::dpop::DpopVerifier,
    pub(super) required: bool,
}

impl DpopSection {
    /// The verifier the section describes; the nonce secret is read from the environment.
    #[cfg(feature = "dpop")]
    pub(super) fn build(
        section: Spanned<DpopSection>,
        at: &Locator<'_>,
    ) -> Result<DpopSettings, ConfigFileError> {
        use crate::algorithm::Algorithm;
        use crate::token::dpop::{DpopOptions, DpopVerifier};

        let this = section.into_inner();
        let mut options = DpopOptions::default();
        if let Some(names) = &this.algorithms {
            let mut algorithms = Vec::new();
            for name in names.get_ref() {
                match name.parse::<Algorithm>() {
                    Ok(alg) if !alg.is_symmetric() => algorithms.push(alg),
                    _ => {
                        return Err(at.invalid(
                            "dpop.algorithms",
                            names,
                            format!(
                                "{name:?} is not an asymmetric JWS algorithm (ES256, ES384, ES512, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512)"
                            ),
                        ));
                    }
                }
            }
            if algorithms.is_empty() {
                return Err(at.invalid(
                    "dpop.algorithms",
                    names,
                    "name at least one algorithm, or leave the key out for the defaults",
                ));
            }
            options = options.algorithms(algorithms);
        }
        if let Some(secs) = &this.window_secs {
            options = options.window(up_to_an_hour(
                at,
                "dpop.window_secs",
                secs,
                "the window is 1 to 3600 seconds",
            )?);
        }
        if let Some(capacity) = &this.replay_capacity {
            if *capacity.get_ref() == 0 {
                return Err(at.invalid(
                    "dpop.replay_capacity",
                    capacity,
                    "the replay cache must hold at least one proof",
                ));
            }
            options = options.replay_capacity(*capacity.get_ref());
        }
        if let Some(secs) = &this.nonce_lifetime_secs {
            options = options.require_nonce(up_to_an_hour(
                at,
                "dpop.nonce_lifetime_secs",
                secs,
                "a nonce lives 1 to 3600 seconds",
            )?);
        }
        match (&this.nonce_secret_env, &this.nonce_lifetime_secs) {
            (Some(var), Some(_)) => {
                let text = at.env("dpop.nonce_secret_env", var)?;
                let mut secret = [0_u8; 32];
                hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| {
                    at.invalid(
                        "dpop.nonce_secret_env",
                        var,
                        format!(
                            "the environment variable {} must hold 64 hex digits (32 random bytes)",
                            var.get_ref()
                        ),
                    )
                })?;
                options = options.nonce_secret(secret);
            }
            (Some(var), None) => {
                return Err(at.invalid(
                    "dpop.nonce_secret_env",
                    var,
                    "a nonce secret without nonce_lifetime_secs would not be used",
                ));
            }
            (None, _) => {}
        }
        Ok(DpopSettings {
            verifier: DpopVerifier::new(options),
            required: this.required.unwrap_or(false),
        })
    }

    /// Without the feature, the section cannot be used: say so rather than ignore it.
    #[cfg(not(feature = "dpop"))]
    pub(super) fn build(
        section: Spanned<DpopSection>,
        at: &Locator<'_>,
    ) -> Result<(), ConfigFileError> {
        Err(at.invalid(
            "dpop",
            &section,
            "DPoP needs the crate feature `dpop` (rmcp-authz = { features = [\"dpop\"] })",
        ))
    }
}

/// `secs` at `key` as a duration of 1 to 3600 seconds; else an error saying `message`.
#[cfg(feature = "dpop")]
fn up_to_an_hour(
    at: &Locator<'_>,
    key: &str,
    secs: &Spanned<u64>,
    message: &str,
) -> Result<std::time::Duration, ConfigFileError> {
    match *secs.get_ref() {
        1..=3600 => Ok(std::time::Duration::from_secs(*secs.get_ref())),
        _ => Err(at.invalid(key, secs, message)),
    }
}
