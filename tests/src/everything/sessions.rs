//! rmcp's in-memory session manager, with what the `test_reconnection` tool needs to
//! close its own SSE stream in the middle of the call (SEP-1699) and to know when the
//! client has resumed it.
//!
//! rmcp can close one request's SSE stream (`LocalSessionHandle::close_sse_stream`), but
//! names the stream by an internal per-session number that a handler never sees. This
//! manager hands each request to rmcp's session exactly as `LocalSessionManager` does, and
//! on the way notes which stream number each `tools/call test_reconnection` got; it marks a
//! stream resumed when a `GET` with `Last-Event-ID` (`<index>/<stream number>`) reopens it.
//! Everything else is `LocalSessionManager`'s own code.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    RestoreOutcome, ServerSseMessage, SessionId,
};
use tokio::sync::Notify;
use tokio_stream::wrappers::ReceiverStream;

/// The tool whose stream the manager keeps track of.
pub const RECONNECTION_TOOL: &str = "test_reconnection";

/// `LocalSessionManager`, noting the stream of each `test_reconnection` call.
#[derive(Debug, Default)]
pub struct Sessions {
    local: LocalSessionManager,
    /// (session, JSON-RPC request id) to rmcp's stream number, for `test_reconnection`.
    streams: Mutex<HashMap<(String, String), u64>>,
    /// (session, stream number) of the streams a client has resumed.
    resumed: Mutex<HashSet<(String, u64)>>,
    resumes: Notify,
}

/// Why a stream could not be closed.
#[derive(Debug)]
pub struct CloseError(String);

impl std::fmt::Display for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Sessions {
    /// Closes the SSE stream of request `request` in session `session` (the client may
    /// resume it with `Last-Event-ID`), sending a priming event with `retry` first.
    /// Returns the stream's number, for [`Sessions::resumed`].
    pub async fn close_stream(
        &self,
        session: &str,
        request: &RequestId,
        retry: Duration,
    ) -> Result<u64, CloseError> {
        let key = (session.to_owned(), request.to_string());
        let stream = self
            .lock_streams()
            .remove(&key)
            .ok_or_else(|| CloseError(format!("no stream noted for request {request}")))?;
        let handle = self
            .local
            .sessions
            .read()
            .await
            .get(&SessionId::from(session))
            .cloned()
            .ok_or_else(|| CloseError(format!("no session {session}")))?;
        handle
            .close_sse_stream(stream, Some(retry))
            .await
            .map_err(|e| CloseError(format!("closing stream {stream}: {e}")))?;
        Ok(stream)
    }

    /// Waits until the client has resumed stream `stream` of `session`, for at most
    /// `limit`; says whether it did.
    pub async fn resumed(&self, session: &str, stream: u64, limit: Duration) -> bool {
        let key = (session.to_owned(), stream);
        tokio::time::timeout(limit, async {
            loop {
                let notified = self.resumes.notified();
                if self.lock_resumed().remove(&key) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_resumed(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u64)>> {
        self.resumed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The JSON-RPC id of `message` if it calls the reconnection tool.
fn reconnection_call(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        ClientJsonRpcMessage::Request(request) => match &request.request {
            ClientRequest::CallToolRequest(call) if call.params.name == RECONNECTION_TOOL => {
                Some(request.id.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// The stream number of a `Last-Event-ID` of rmcp's (`<index>/<stream number>`).
fn stream_of(last_event_id: &str) -> Option<u64> {
    last_event_id.split_once('/')?.1.parse().ok()
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.local.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.local.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.local.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.local.close_session(id).await
    }

    /// `LocalSessionManager::create_stream`, noting the stream of a reconnection call.
    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let handle = self
            .local
            .sessions
            .read()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))?;
        let receiver = handle.establish_request_wise_channel().await?;
        if let (Some(request), Some(stream)) =
            (reconnection_call(&message), receiver.http_request_id)
        {
            self.lock_streams()
                .insert((id.to_string(), request.to_string()), stream);
        }
        handle
            .push_message(message, receiver.http_request_id)
            .await?;
        Ok(ReceiverStream::new(receiver.inner))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.local.create_standalone_stream(id).await
    }

    /// `LocalSessionManager::resume`, marking the stream resumed once rmcp has reopened it.
    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = stream_of(&last_event_id);
        let resumed = self.local.resume(id, last_event_id).await?;
        if let Some(stream) = stream {
            self.lock_resumed().insert((id.to_string(), stream));
            self.resumes.notify_waiters();
        }
        Ok(resumed)
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.local.restore_session(id).await
    }
}
