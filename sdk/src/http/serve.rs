//! Serving an authorized MCP app over TCP with the settings an MCP server needs.
//!
//! `axum::serve` leaves Nagle's algorithm on. A Streamable HTTP response goes out in more
//! than one write (headers, then the body or the SSE events), and with Nagle on, the
//! second small write waits for the client's acknowledgement of the first, which the
//! client delays (delayed ACK, up to 40 ms on Linux): an SSE tool call then takes tens of
//! milliseconds instead of a fraction of one. [`Authz::serve`](crate::Authz::serve) sets `TCP_NODELAY` on every
//! connection, makes the peer's address available to the audit log, and on shutdown
//! drains the audit log so no event is lost. docs/performance.md shows the difference.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt as _;

use crate::audit::Auditor;

/// Serves `app` on `listener` until `shutdown` completes, then closes `auditor` (see
/// `Authz::serve`).
pub(crate) async fn serve(
    auditor: Option<&Auditor>,
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(target: "rmcp_authz::http", %error, "could not set TCP_NODELAY");
        }
    });
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    if let Some(auditor) = auditor {
        auditor.close().await;
    }
    served
}

/// Completes when the process is asked to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM, which
/// process managers (systemd, Kubernetes, Docker) send. Pass it to [`Authz::serve`](crate::Authz::serve) so a
/// managed server drains its audit log before it exits.
///
/// ```no_run
/// # async fn run(authz: rmcp_authz::Authz, app: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// authz.serve(listener, app, rmcp_authz::http::shutdown_signal()).await
/// # }
/// ```
///
/// If a signal handler cannot be installed, that signal is not waited for (and the failure
/// is logged at WARN on target `rmcp_authz::http`); the other still stops the server.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(target: "rmcp_authz::http", %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(target: "rmcp_authz::http", %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    // Whichever comes first (without tokio's `macros` feature).
    let mut ctrl_c = std::pin::pin!(ctrl_c);
    let mut terminate = std::pin::pin!(terminate);
    std::future::poll_fn(|cx| {
        if ctrl_c.as_mut().poll(cx).is_ready() || terminate.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
