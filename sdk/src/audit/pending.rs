//! [`Pending`]: what taking a place in the audit queue, or queueing a request's entry,
//! returns. Both almost always finish at once; the future says so in a few bytes, so a
//! request's future does not carry the entry, or a semaphore's wait, across its own
//! suspension points.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::AuditError;
use super::pipeline::AuditFailure;

/// A queue operation that finished, or the wait that remains of it.
///
/// An `async fn` holds its arguments and locals across every `.await`: queueing an event
/// that way made each request's future carry the entry (over 600 bytes) and the record
/// it came from, several times over. This future is built after the entry has moved into
/// the queue, and holds at most a receiver or a box.
pub(crate) enum Pending<'a> {
    /// Finished (taken once polled).
    Done(Option<Result<(), AuditFailure>>),
    /// Queued; waiting for the writer to say it was written (durable mode, fail-closed).
    Written(oneshot::Receiver<Result<(), Arc<AuditError>>>),
    /// Waiting for room in a full queue ([`Overload::Block`](super::Overload::Block)): the
    /// rare case, boxed so the common ones stay small.
    Room(Pin<Box<dyn Future<Output = Result<(), AuditFailure>> + Send + 'a>>),
}

impl Pending<'_> {
    /// Finished with `result`.
    pub(crate) fn done(result: Result<(), AuditFailure>) -> Self {
        Pending::Done(Some(result))
    }
}

impl Future for Pending<'_> {
    type Output = Result<(), AuditFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            // Polled again after it finished: nothing more happened.
            Pending::Done(result) => Poll::Ready(result.take().unwrap_or(Ok(()))),
            Pending::Written(written) => Pin::new(written).poll(cx).map(|answer| match answer {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(AuditFailure::Write(e)),
                // The writer always answers; it went away only at shutdown.
                Err(_) => Err(AuditFailure::Closed),
            }),
            Pending::Room(wait) => wait.as_mut().poll(cx),
        }
    }
}
