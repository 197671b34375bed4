//! MCP over stdio: the token comes from the environment.
//!
//! The MCP authorization specification leaves stdio servers to take credentials from
//! their environment. [`Authz::serve_stdio`](crate::Authz::serve_stdio) reads the access token from an environment
//! variable, verifies it before serving anything (a missing or invalid token is an error
//! naming the variable, for `main` to print before exiting non-zero), and serves the
//! wrapped handler on stdin/stdout. The same policy gates every call, and the token's
//! expiry is checked on every call, without leeway: a long-running stdio server stops
//! serving when its token expires (and does not start with a token past its `exp`). The
//! token itself is dropped once verified.

use rmcp::service::ServerInitializeError;
use rmcp::{ServerHandler, ServiceExt};
use tokio::task::JoinError;

use crate::audit::Auditor;
use crate::audit::{AuditEvent, DecisionKind, EventKind, Outcome};
use crate::error::ConfigError;
use crate::guard::Guard;
use crate::principal::Principal;
use crate::server::Authorized;
use crate::token::AuthError;

/// The default environment variable holding the access token.
pub const DEFAULT_TOKEN_VAR: &str = "MCP_ACCESS_TOKEN";

/// Why a stdio server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdioError {
    /// The variable is unset or empty.
    #[error(
        "no access token: set the environment variable {var} to an OAuth access token for this server"
    )]
    MissingToken {
        /// The variable name.
        var: String,
    },
    /// The token was refused.
    #[error("the access token in {var} was refused: {source}")]
    InvalidToken {
        /// The variable name.
        var: String,
        /// Why.
        #[source]
        source: AuthError,
    },
    /// The token is DPoP-bound (`cnf.jkt`, RFC 9449): over stdio there is no request to
    /// prove its key on, so it would be a bearer token to whoever set the variable.
    #[error(
        "the access token in {var} is DPoP-bound (cnf.jkt): over stdio no DPoP proof can be sent, so it is refused; give this server a token that is not sender-constrained"
    )]
    DpopBound {
        /// The variable name.
        var: String,
    },
    /// The policy and the handler do not fit.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The stdio transport failed.
    #[error("stdio transport: {0}")]
    Transport(#[source] Box<ServerInitializeError>),
    /// The task serving the connection failed.
    #[error("stdio transport: {0}")]
    Serving(#[source] JoinError),
}

/// Reads and verifies the token in environment variable `var` (see
/// `Authz::principal_from_env`).
pub(crate) async fn principal_from_env(guard: &Guard, var: &str) -> Result<Principal, StdioError> {
    let token = std::env::var(var).unwrap_or_default();
    let token = token.trim();
    if token.is_empty() {
        return Err(StdioError::MissingToken {
            var: var.to_owned(),
        });
    }
    let refused = |source| StdioError::InvalidToken {
        var: var.to_owned(),
        source,
    };
    let principal = guard.verifier().verify(token).await.map_err(refused)?;
    // A bound token used without its proof is what a thief would do (RFC 9449 section 7.2).
    if principal.bound_key().is_some() {
        return Err(StdioError::DpopBound {
            var: var.to_owned(),
        });
    }
    // Calls are refused from `exp` on, without leeway; so is starting after it.
    let now = guard.now();
    if now >= principal.expires_at() {
        return Err(refused(AuthError::Expired {
            exp: principal.expires_at(),
            now,
            leeway_secs: 0,
        }));
    }
    Ok(principal)
}

/// Serves `handler` on stdin/stdout for the principal whose token is in `var`, until the
/// client closes the connection; closes the audit log before returning.
pub(crate) async fn serve<H: ServerHandler>(
    guard: &Guard,
    handler: H,
    var: &str,
) -> Result<(), StdioError> {
    let principal = match principal_from_env(guard, var).await {
        Ok(p) => p,
        Err(e) => {
            record_start_refusal(guard.auditor(), &e).await;
            return Err(e);
        }
    };
    guard.check_tools(&handler)?;
    let wrapped = Authorized::new(handler, guard.clone(), Some(principal));
    let served = async {
        let service = wrapped
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| StdioError::Transport(Box::new(e)))?;
        service.waiting().await.map_err(StdioError::Serving)
    }
    .await;
    if let Some(auditor) = guard.auditor() {
        auditor.close().await;
    }
    served.map(|_| ())
}

/// Records a refused start (no token, or one the verifier refused) as an authentication
/// failure, and closes the audit log: the process is about to exit.
async fn record_start_refusal(auditor: Option<&Auditor>, error: &StdioError) {
    let Some(auditor) = auditor else {
        return;
    };
    let (code, reason) = match error {
        StdioError::InvalidToken { source, .. } => {
            (source.error_code(), source.description().to_owned())
        }
        other => ("missing_token", other.to_string()),
    };
    let mut event = AuditEvent::new(
        EventKind::AuthenticationFailure,
        DecisionKind::Deny,
        Outcome::Denied,
    )
    .denied(code, reason);
    event.transport = Some("stdio".to_owned());
    if let Ok(slot) = auditor.reserve().await {
        let _ = slot.record(event).await;
    }
    auditor.close().await;
}
