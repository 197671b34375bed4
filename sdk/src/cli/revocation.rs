//! `token revoke`, `token unrevoke` and `token revocations`: the revocation list shared
//! through PostgreSQL (feature `postgres`), which every replica following it applies
//! within a second.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::args::RevocationTarget;
use super::{Outcome, print_json};
use crate::postgres::{
    Database, RevocationKind, revoke as revoke_in, revoked, unrevoke as unrevoke_in,
};

/// What `target` names.
fn kind_and_value(target: &RevocationTarget) -> Result<(RevocationKind, &str), String> {
    match (&target.jti, &target.sub) {
        (Some(jti), None) => Ok((RevocationKind::TokenId, jti)),
        (None, Some(sub)) => Ok((RevocationKind::Subject, sub)),
        _ => Err("name one --jti or one --sub".to_owned()),
    }
}

/// Runs `work` on a runtime of its own.
fn block_on<T>(work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    super::runtime()?.block_on(work)
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Revokes what `target` names until `ttl` from now.
pub(super) fn revoke(
    database: &Database,
    target: &RevocationTarget,
    ttl: Duration,
    reason: Option<&str>,
    as_json: bool,
) -> Result<Outcome, String> {
    let (kind, value) = kind_and_value(target)?;
    let expires_at = crate::postgres::expiry_after(ttl)?;
    block_on(async {
        revoke_in(database, kind, value, expires_at, reason)
            .await
            .map_err(|e| e.to_string())
    })?;
    if as_json {
        print_json(&json!({
            "revoked": {"kind": kind.claim(), "value": value},
            "expires_at": rfc3339(expires_at),
        }));
    } else {
        println!(
            "revoked {} {value:?} until {} for every replica following {database}",
            kind.claim(),
            rfc3339(expires_at)
        );
    }
    Ok(Outcome::Ok)
}

/// Lifts the revocation of what `target` names; exit 1 when there was none.
pub(super) fn unrevoke(
    database: &Database,
    target: &RevocationTarget,
    as_json: bool,
) -> Result<Outcome, String> {
    let (kind, value) = kind_and_value(target)?;
    let removed = block_on(async {
        unrevoke_in(database, kind, value)
            .await
            .map_err(|e| e.to_string())
    })?;
    if as_json {
        print_json(&json!({"kind": kind.claim(), "value": value, "removed": removed}));
    } else if removed {
        println!("{} {value:?} is no longer revoked", kind.claim());
    } else {
        println!("{} {value:?} was not revoked", kind.claim());
    }
    Ok(if removed {
        Outcome::Ok
    } else {
        Outcome::Refused
    })
}

/// Lists the revocations in force.
pub(super) fn list(database: &Database, as_json: bool) -> Result<Outcome, String> {
    let entries = block_on(async { revoked(database).await.map_err(|e| e.to_string()) })?;
    if as_json {
        let entries: Vec<_> = entries
            .iter()
            .map(|r| {
                json!({
                    "kind": r.kind.claim(),
                    "value": r.value,
                    "revoked_at": rfc3339(r.revoked_at),
                    "expires_at": rfc3339(r.expires_at),
                    "reason": r.reason,
                })
            })
            .collect();
        print_json(&json!({ "revocations": entries }));
    } else if entries.is_empty() {
        println!("no revocations in force");
    } else {
        for r in &entries {
            println!(
                "{} {:?} revoked {} until {}{}",
                r.kind.claim(),
                r.value,
                rfc3339(r.revoked_at),
                rfc3339(r.expires_at),
                r.reason
                    .as_deref()
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(Outcome::Ok)
}
