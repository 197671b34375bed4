//! `token inspect` and `token check`: what a token says, and what a configuration makes of
//! it.

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::{Outcome, error_message, print_json};
use crate::config::Config;
use crate::policy::{Decision, DenyReason, Operation};
use crate::token::dangerous::decode_unverified;
use crate::token::{Algorithm, DEFAULT_MAX_TOKEN_BYTES, Verifier as _};
use crate::{Clock, SystemClock};

/// The token argument, or standard input for `-`; surrounding whitespace and a
/// `Bearer ` prefix are removed.
pub(super) fn read(arg: &str) -> Result<String, String> {
    let raw = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
        text
    } else {
        arg.to_owned()
    };
    let token = raw.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token);
    if token.is_empty() {
        return Err("the token is empty".to_owned());
    }
    Ok(token.to_owned())
}

/// Decodes without verifying, reports expiry and problems.
pub(super) fn inspect(token: &str, as_json: bool) -> Result<Outcome, String> {
    let decoded = decode_unverified(token)
        .map_err(|e| format!("cannot decode the token: {}", error_message(&e)))?;
    let now = SystemClock.now_unix();
    let problems = problems(token, &decoded.header, &decoded.claims, now);
    let exp = decoded.claims.get("exp").and_then(Value::as_i64);
    if as_json {
        print_json(&json!({
            "header": decoded.header,
            "claims": decoded.claims,
            "expires_at": exp.map(rfc3339),
            "expires_in_secs": exp.map(|e| e - now),
            "problems": problems,
            "verified": false,
        }));
    } else {
        println!("NOT VERIFIED: this shows what the token says, not whether it is genuine.\n");
        println!("header:\n{}", indent(&Value::Object(decoded.header)));
        println!("claims:\n{}", indent(&Value::Object(decoded.claims)));
        match exp {
            Some(exp) => println!("expiry: {}", relative(exp, now)),
            None => println!("expiry: none"),
        }
        if problems.is_empty() {
            println!("problems: none found");
        } else {
            println!("problems:");
            for p in &problems {
                println!("  - {p}");
            }
        }
    }
    Ok(if problems.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Refused
    })
}

/// What a strict verifier would object to, in words.
fn problems(
    token: &str,
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    now: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    if token.len() > DEFAULT_MAX_TOKEN_BYTES {
        out.push(format!(
            "the token is {} bytes, over the default limit of {DEFAULT_MAX_TOKEN_BYTES}",
            token.len()
        ));
    }
    match header.get("alg").and_then(Value::as_str) {
        None => out.push("the header has no \"alg\"".to_owned()),
        Some(a) if a.eq_ignore_ascii_case("none") => out.push("alg is \"none\": the token is unsigned and is always refused".to_owned()),
        Some(a) if a.parse::<Algorithm>().is_err() => out.push(format!("alg {a:?} is not an algorithm rmcp-authz verifies")),
        Some(a) if a.starts_with("HS") => out.push(format!("alg {a} is a shared-secret algorithm: accepted only by verifiers configured with that secret")),
        Some(_) => {}
    }
    match header.get("typ").and_then(Value::as_str) {
        None => out.push("no \"typ\": access tokens say \"at+jwt\" (RFC 9068); refused unless the verifier's typ check is lenient".to_owned()),
        Some(t) if !matches!(t.to_ascii_lowercase().as_str(), "at+jwt" | "application/at+jwt") => {
            out.push(format!("typ is {t:?}, not \"at+jwt\" (RFC 9068): is this an ID token or another kind of JWT?"));
        }
        Some(_) => {}
    }
    if !header.contains_key("kid") {
        out.push("no \"kid\": a verifier with several keys cannot choose one".to_owned());
    }
    for h in ["jku", "jwk", "x5u", "x5c"] {
        if header.contains_key(h) {
            out.push(format!(
                "header {h:?} is present; rmcp-authz never uses it to find keys"
            ));
        }
    }
    if header.contains_key("crit") {
        out.push(
            "\"crit\" is present; rmcp-authz implements no JWS extensions and refuses it"
                .to_owned(),
        );
    }
    for c in ["iss", "aud", "exp", "sub"] {
        if !claims.contains_key(c) {
            out.push(match c {
                "aud" => "no \"aud\": the token does not say which resource it is for; resource servers refuse it (RFC 8707)".to_owned(),
                "exp" => "no \"exp\": tokens without an expiry are refused".to_owned(),
                other => format!("no {other:?}, a required claim (RFC 9068)"),
            });
        }
    }
    for c in ["exp", "nbf", "iat", "auth_time"] {
        if let Some(v) = claims.get(c)
            && !v.is_number()
        {
            out.push(format!(
                "{c:?} is not a number (NumericDate); it is refused"
            ));
        }
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64)
        && exp <= now
    {
        out.push(format!("expired: {}", relative(exp, now)));
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
        && nbf > now
    {
        out.push(format!(
            "not valid until {} ({} s from now)",
            rfc3339(nbf),
            nbf - now
        ));
    }
    if !claims.contains_key("scope") && !claims.contains_key("scp") {
        out.push("no \"scope\" or \"scp\": the token grants no scopes".to_owned());
    }
    out
}

/// Verifies with a configuration and explains the decision.
pub(super) fn check(
    config: &Path,
    token: &str,
    tool: Option<&str>,
    as_json: bool,
) -> Result<Outcome, String> {
    let config = Config::from_file(config).map_err(|e| error_message(&e))?;
    let (verifier, policy) = config.into_parts();
    let principal = match verifier.verify_sync(token) {
        Ok(p) => p,
        Err(e) => {
            if as_json {
                print_json(&json!({
                    "accepted": false,
                    "check": format!("{:?}", e.kind()),
                    "error": e.to_string(),
                    "error_code": e.error_code(),
                }));
            } else {
                println!("REJECTED: {e}");
                println!(
                    "  failed check: {:?}; a server answers {} with error={}",
                    e.kind(),
                    if e.error_code() == "invalid_request" {
                        400
                    } else {
                        401
                    },
                    e.error_code()
                );
            }
            return Ok(Outcome::Refused);
        }
    };
    let chain: Vec<&str> = principal
        .delegation_chain()
        .iter()
        .map(|a| a.id())
        .collect();
    let decision = tool.map(|t| (t, policy.decide(&principal, Operation::CallTool(t))));
    if as_json {
        let mut out = json!({
            "accepted": true,
            "issuer": principal.issuer(),
            "subject": principal.subject(),
            "client_id": principal.client_id(),
            "agent": principal.agent(),
            "scopes": principal.scopes(),
            "delegation_chain": chain,
            "expires_at": rfc3339(principal.expires_at()),
            "audience": verifier.resource_uri(),
        });
        if let Some((tool, decision)) = &decision {
            out["tool"] = json!(tool);
            out["allowed"] = json!(decision.is_allowed());
            if let Some(denial) = decision.denial() {
                out["denial"] = json!(denial.to_string());
                if let DenyReason::InsufficientScope { required, missing } = denial.reason() {
                    out["required_scopes"] = json!(required);
                    out["missing_scopes"] = json!(missing);
                }
            }
        }
        print_json(&out);
    } else {
        println!("ACCEPTED");
        println!("  issuer    {}", principal.issuer());
        println!("  subject   {}", principal.subject().unwrap_or("(none)"));
        println!("  client    {}", principal.client_id().unwrap_or("(none)"));
        println!("  agent     {}", principal.agent().unwrap_or("(none)"));
        println!("  scopes    {}", principal.scopes().join(" "));
        if !chain.is_empty() {
            println!("  delegated through {}", chain.join(" <- "));
        }
        println!(
            "  expiry    {}",
            relative(principal.expires_at(), SystemClock.now_unix())
        );
        if let Some((tool, decision)) = &decision {
            match decision {
                Decision::Allow => println!("\ntool {tool}: ALLOWED"),
                _ => {
                    let denial = decision
                        .denial()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    println!("\ntool {tool}: DENIED: {denial}");
                    if let Some(scope) = decision.denial().and_then(|d| d.challenge_scope()) {
                        println!(
                            "  a server answers 403 with WWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"{scope}\""
                        );
                    }
                }
            }
        }
    }
    Ok(match decision {
        Some((_, d)) if !d.is_allowed() => Outcome::Refused,
        _ => Outcome::Ok,
    })
}

fn indent(v: &Value) -> String {
    serde_json::to_string_pretty(v)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rfc3339(unix: i64) -> String {
    let t = if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// "expires in 59m 58s (2026-...)" or "expired 3h 2m ago (...)".
fn relative(exp: i64, now: i64) -> String {
    let span = humantime::format_duration(Duration::from_secs((exp - now).unsigned_abs()));
    if exp > now {
        format!("expires in {span} ({})", rfc3339(exp))
    } else {
        format!("expired {span} ago ({})", rfc3339(exp))
    }
}
