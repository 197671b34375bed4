//! The one answer every layer acts on: [`Decision`].
//!
//! The HTTP layer turns a denial into a 403 challenge, the server wrapper into an MCP
//! error, the audit log into a record; none of them re-derives why. A denial for missing
//! scopes carries every scope the operation needs (RFC 6750 section 3.1 `scope`, the MCP
//! step-up flow), not only the missing ones, so a client that asks for exactly those gets
//! a token that works.

use std::fmt;

/// What the policy decided for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// The operation may proceed.
    Allow,
    /// The operation is refused, and why.
    Deny(Denial),
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The denial, if refused.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Decision::Allow => None,
            Decision::Deny(d) => Some(d),
        }
    }
}

/// A refusal: the operation and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    operation: String,
    reason: DenyReason,
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// The caller lacks scopes. `required` is every scope to ask for (one complete way to
    /// meet the rule), `missing` those of them the caller does not hold.
    InsufficientScope {
        /// The scopes the operation needs, for a step-up challenge.
        required: Vec<String>,
        /// The required scopes the caller does not hold.
        missing: Vec<String>,
    },
    /// No rule covers the operation, so it is denied by default.
    NoRule,
    /// The rule admits only certain clients, and this caller's client is not one.
    ClientNotPermitted {
        /// The caller's client, if the token names one.
        client: Option<String>,
    },
    /// The caller's token expired after the session began (stdio re-checks on every call).
    TokenExpired {
        /// The token's `exp`.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// The operation belongs to another caller (a task started by someone else).
    NotOwner,
}

impl Denial {
    pub(crate) fn new(operation: String, reason: DenyReason) -> Denial {
        Denial { operation, reason }
    }

    /// The operation refused, e.g. `tools/call delete_note`.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// Why.
    pub fn reason(&self) -> &DenyReason {
        &self.reason
    }

    /// Machine-readable details for an error's `data`: `{"error": "insufficient_scope",
    /// "scope": "..."}` for missing scopes, `{"error": "invalid_token"}` for an expired
    /// token, `{"error": "access_denied"}` otherwise.
    pub fn error_data(&self) -> serde_json::Value {
        match &self.reason {
            DenyReason::InsufficientScope { required, .. } => serde_json::json!({
                "error": "insufficient_scope",
                "scope": required.join(" "),
            }),
            DenyReason::TokenExpired { .. } => serde_json::json!({ "error": "invalid_token" }),
            _ => serde_json::json!({ "error": "access_denied" }),
        }
    }

    /// The reason as a stable code, as audit events record it: `insufficient_scope`,
    /// `no_rule`, `client_not_permitted`, `token_expired` or `not_owner`.
    pub fn code(&self) -> &'static str {
        match &self.reason {
            DenyReason::InsufficientScope { .. } => "insufficient_scope",
            DenyReason::NoRule => "no_rule",
            DenyReason::ClientNotPermitted { .. } => "client_not_permitted",
            DenyReason::TokenExpired { .. } => "token_expired",
            DenyReason::NotOwner => "not_owner",
        }
    }

    /// For a missing-scope denial, the `scope` value of the step-up challenge: every scope
    /// the operation needs, space separated.
    pub fn challenge_scope(&self) -> Option<String> {
        match &self.reason {
            DenyReason::InsufficientScope { required, .. } => Some(required.join(" ")),
            _ => None,
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            DenyReason::InsufficientScope { required, missing } => write!(
                f,
                "{} needs scopes {:?}; the token lacks {:?}",
                self.operation, required, missing
            ),
            DenyReason::NoRule => write!(
                f,
                "{} is not covered by any rule and is denied by default",
                self.operation
            ),
            DenyReason::ClientNotPermitted { client } => write!(
                f,
                "{} is not permitted for client {:?}",
                self.operation,
                client.as_deref().unwrap_or("(none)")
            ),
            DenyReason::TokenExpired { exp, now } => write!(
                f,
                "{} refused: the token expired at {exp} (now {now}); start again with a fresh token",
                self.operation
            ),
            DenyReason::NotOwner => write!(
                f,
                "{} refused: it belongs to another caller",
                self.operation
            ),
        }
    }
}
