//! The `[verifier]` section: how access tokens are verified, as written in the file, and the
//! [`JwtVerifier`] it builds.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigFileError, Locator};
use super::names::OneOf;
use crate::token::{Algorithm, JwtVerifier, JwtVerifierBuilder, Key, KeySet, MAX_LEEWAY, TypCheck};

/// `[verifier]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifierSection {
    issuer: String,
    audience: String,
    jwks_file: Option<Spanned<String>>,
    jwks_uri: Option<Spanned<String>>,
    #[serde(default)]
    allow_http_loopback: bool,
    #[serde(default)]
    pem_files: Vec<Spanned<PemEntry>>,
    hmac_secret_env: Option<Spanned<String>>,
    hmac_algorithm: Option<Spanned<String>>,
    algorithms: Option<Spanned<Vec<String>>>,
    leeway_secs: Option<Spanned<u64>>,
    typ: Option<Spanned<OneOf<Typ>>>,
    required_claims: Option<Vec<String>>,
    max_token_bytes: Option<usize>,
}

/// One of `pem_files`: `{ path, algorithm }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PemEntry {
    path: String,
    algorithm: String,
}

/// `typ`: how the header's `typ` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Typ {
    /// [`TypCheck::Strict`].
    Strict,
    /// [`TypCheck::Lenient`].
    Lenient,
}

impl From<Typ> for TypCheck {
    fn from(typ: Typ) -> TypCheck {
        match typ {
            Typ::Strict => TypCheck::Strict,
            Typ::Lenient => TypCheck::Lenient,
        }
    }
}

/// The algorithm named `value`, at `key`; an unknown name lists the known ones.
fn algorithm<T>(
    at: &Locator<'_>,
    key: &str,
    value: &Spanned<T>,
    name: &str,
) -> Result<Algorithm, ConfigFileError> {
    name.parse::<Algorithm>().map_err(|e| {
        let known = Algorithm::ALL.map(Algorithm::as_str).join(", ");
        at.invalid_with(key, value, format!("{e}; use one of {known}"), e)
    })
}

/// Takes the keys from the JWK Set at `uri` (feature `jwks`).
#[cfg(feature = "jwks")]
fn remote_keys(
    builder: JwtVerifierBuilder,
    uri: &Spanned<String>,
    allow_http_loopback: bool,
    at: &Locator<'_>,
) -> Result<JwtVerifierBuilder, ConfigFileError> {
    let mut options = crate::remote::RemoteJwksOptions::default();
    options.fetch.allow_http_loopback = allow_http_loopback;
    let jwks = crate::remote::RemoteJwks::new(uri.get_ref().clone(), options)
        .map_err(|e| at.invalid_because("verifier.jwks_uri", uri, e))?;
    Ok(builder.remote_jwks(jwks))
}

/// Without feature `jwks`, a `jwks_uri` is refused.
#[cfg(not(feature = "jwks"))]
fn remote_keys(
    _builder: JwtVerifierBuilder,
    uri: &Spanned<String>,
    _allow_http_loopback: bool,
    at: &Locator<'_>,
) -> Result<JwtVerifierBuilder, ConfigFileError> {
    Err(at.invalid(
        "verifier.jwks_uri",
        uri,
        "remote JWK Sets need rmcp-authz built with the `jwks` feature",
    ))
}

impl VerifierSection {
    /// The verifier; relative key paths are resolved against `base`.
    pub(super) fn build(
        self,
        at: &Locator<'_>,
        base: &Path,
    ) -> Result<JwtVerifier, ConfigFileError> {
        let mut builder = JwtVerifier::builder(self.issuer, self.audience);
        let mut keys = KeySet::new();
        if let Some(file) = &self.jwks_file {
            let key = "verifier.jwks_file";
            let set = KeySet::from_jwks_file(base.join(file.get_ref()))
                .map_err(|e| at.invalid_because(key, file, e))?;
            keys.extend(set)
                .map_err(|e| at.invalid_because(key, file, e))?;
        }
        for (i, entry) in self.pem_files.iter().enumerate() {
            let key = format!("verifier.pem_files[{i}]");
            let e = entry.get_ref();
            let alg = algorithm(at, &key, entry, &e.algorithm)?;
            let pem = Key::from_pem_file(base.join(&e.path), alg)
                .map_err(|m| at.invalid_because(&key, entry, m))?;
            keys.insert(pem)
                .map_err(|m| at.invalid_because(&key, entry, m))?;
        }
        if let Some(var) = &self.hmac_secret_env {
            let key = "verifier.hmac_secret_env";
            let alg = match &self.hmac_algorithm {
                Some(a) => algorithm(at, "verifier.hmac_algorithm", a, a.get_ref())?,
                None => Algorithm::HS256,
            };
            // Neither error keeps its cause: the decoding error would show the secret.
            let text = at.env(key, var)?;
            let secret = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
                at.invalid(
                    key,
                    var,
                    format!(
                        "{} must hold the secret as unpadded base64url",
                        var.get_ref()
                    ),
                )
            })?;
            let hmac = Key::hmac(secret, alg).map_err(|m| at.invalid_because(key, var, m))?;
            keys.insert(hmac)
                .map_err(|m| at.invalid_because(key, var, m))?;
        }
        builder = builder.keys(keys);
        if let Some(uri) = &self.jwks_uri {
            builder = remote_keys(builder, uri, self.allow_http_loopback, at)?;
        }
        if let Some(list) = &self.algorithms {
            let algs = list
                .get_ref()
                .iter()
                .map(|a| algorithm(at, "verifier.algorithms", list, a))
                .collect::<Result<Vec<_>, _>>()?;
            builder = builder.algorithms(algs);
        }
        if let Some(leeway) = &self.leeway_secs {
            let leeway_time = Duration::from_secs(*leeway.get_ref());
            if leeway_time > MAX_LEEWAY {
                return Err(at.invalid(
                    "verifier.leeway_secs",
                    leeway,
                    format!(
                        "at most {} seconds; fix the clocks instead",
                        MAX_LEEWAY.as_secs()
                    ),
                ));
            }
            builder = builder.leeway(leeway_time);
        }
        if let Some(typ) = &self.typ {
            let check = typ
                .get_ref()
                .get()
                .map_err(|e| at.invalid_because("verifier.typ", typ, e))?;
            builder = builder.typ_check(check.into());
        }
        if let Some(claims) = self.required_claims {
            builder = builder.required_claims(claims);
        }
        if let Some(limit) = self.max_token_bytes {
            builder = builder.max_token_bytes(limit);
        }
        Ok(builder.build()?)
    }
}
