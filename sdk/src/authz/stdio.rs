//! The stdio side of [`Authz`]: the caller from the environment, the one-caller wrapper,
//! the stdio server (made by the [`stdio`](crate::stdio) module from this `Authz`'s guard).

use rmcp::ServerHandler;

use super::Authz;
use crate::error::ConfigError;
use crate::principal::Principal;
use crate::server::Authorized;
use crate::stdio::{self, StdioError};

impl Authz {
    /// Reads and verifies the token in environment variable `var`.
    ///
    /// # Errors
    /// [`StdioError::MissingToken`], [`StdioError::InvalidToken`], or [`StdioError::DpopBound`]
    /// for a DPoP-bound token (no proof can be sent over stdio).
    pub async fn principal_from_env(&self, var: &str) -> Result<Principal, StdioError> {
        stdio::principal_from_env(&self.guard, var).await
    }

    /// Wraps `handler` for a transport with one caller, `principal` (stdio, or any
    /// single-client transport): every request is decided for that principal, and refused
    /// once its token has expired.
    ///
    /// # Errors
    /// [`ConfigError::UnknownTools`], as [`Authz::wrap`](crate::Authz::wrap).
    pub fn wrap_for<H: ServerHandler>(
        &self,
        handler: H,
        principal: Principal,
    ) -> Result<Authorized<H>, ConfigError> {
        self.guard.check_tools(&handler)?;
        Ok(Authorized::new(
            handler,
            self.guard.clone(),
            Some(principal),
        ))
    }

    /// Serves `handler` on stdin/stdout for the principal whose token is in `var`, until
    /// the client closes the connection.
    ///
    /// ```no_run
    /// # use rmcp_authz::{Authz, stdio::DEFAULT_TOKEN_VAR};
    /// # async fn run<H: rmcp::ServerHandler>(authz: Authz, handler: H) {
    /// if let Err(e) = authz.serve_stdio(handler, DEFAULT_TOKEN_VAR).await {
    ///     eprintln!("{e}");
    ///     std::process::exit(1);
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// A [`StdioError`] saying what to fix.
    pub async fn serve_stdio(
        &self,
        handler: impl ServerHandler,
        var: &str,
    ) -> Result<(), StdioError> {
        stdio::serve(&self.guard, handler, var).await
    }
}
