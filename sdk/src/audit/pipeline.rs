//! The writer pipeline: events leave the request path through a bounded queue, and one
//! writer thread hands them to the sink in batches.
//!
//! A request first takes a place in the queue ([`Auditor::reserve`]) before its
//! operation runs, so an overloaded log is felt before work is done: under
//! [`Overload::Block`] the request waits for room, under [`Overload::Refuse`] it is
//! refused; either way it is counted in [`AuditStats`], never dropped silently. The
//! writer takes every queued event at once, writes them in one call, and then:
//! - [`Durability::Durable`]: syncs them to stable storage with one `fsync` for the whole
//!   batch (group commit) before any of their requests is answered;
//! - [`Durability::Buffered`]: answers at once, and syncs on an interval.
//!
//! With `fail_closed`, a request also waits until its event is written, and is refused
//! when it could not be, or when the log is known to be failing before the operation
//! runs. [`Auditor::close`] (or dropping the last handle) writes and syncs everything
//! queued before it returns.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{Semaphore, TryAcquireError, oneshot};

use super::arguments::ArgumentRecording;
use super::pending::Pending;
use super::record::Entry;
use super::writer::writer_loop;
use super::{AuditError, AuditEvent, AuditSink};

/// The default queue capacity, in events.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// The default interval at which `buffered` mode syncs the file.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The most events written in one batch.
pub(super) const MAX_BATCH: usize = 1024;

/// The default [`AuditorBuilder::write_delay`]: in `buffered` mode, while events keep
/// coming, the writer looks at the queue this often instead of being woken for each event.
pub const DEFAULT_WRITE_DELAY: Duration = Duration::from_millis(5);

/// After this long without events, a `buffered` writer stops looking and sleeps until an
/// event wakes it: an idle server costs nothing.
pub(super) const POLL_IDLE: Duration = Duration::from_millis(100);

/// A `buffered` request wakes a looking writer anyway once this many events wait.
pub(super) const WAKE_AT: usize = MAX_BATCH / 2;

/// When a request is answered relative to its event reaching the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Answer once the event is queued; the writer writes it at once when it is idle,
    /// and within [`AuditorBuilder::write_delay`] (default 5 ms) while events keep
    /// coming (it then looks at the queue on that interval rather than being woken for
    /// each event), and syncs the file every `flush_interval`. A crash of the process
    /// loses nothing already written (but what is still queued: at most one write delay
    /// of events); a crash of the machine can lose up to one `flush_interval`.
    Buffered {
        /// How often the file is synced.
        flush_interval: Duration,
    },
    /// Answer only after the event is synced to stable storage; concurrent events share
    /// one sync.
    Durable,
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Buffered {
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

/// What a request does when the queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overload {
    /// Wait for room (back-pressure on the callers). The default.
    #[default]
    Block,
    /// Refuse the request at once, telling the client to retry.
    Refuse,
}

/// Why an event could not be recorded, as the request path sees it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditFailure {
    /// The queue is full and the auditor refuses under overload.
    #[error("the audit queue is full")]
    Overloaded,
    /// The auditor is closed.
    #[error("the audit log is closed")]
    Closed,
    /// The sink failed to write or sync the event.
    #[error("the audit event could not be written: {0}")]
    Write(Arc<AuditError>),
}

/// Counters of what the pipeline did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditStats {
    /// Events written by the sink.
    pub written: u64,
    /// Events the sink failed to write (or sync, in `durable` mode).
    pub failed: u64,
    /// Batches written (each one write call).
    pub batches: u64,
    /// Syncs to stable storage.
    pub syncs: u64,
    /// Requests that found the queue full and waited ([`Overload::Block`]).
    pub overload_waits: u64,
    /// Requests refused because the queue was full ([`Overload::Refuse`]).
    pub overload_refusals: u64,
    /// Requests refused because their event could not be written (`fail_closed`).
    pub fail_closed_refusals: u64,
    /// Events offered after [`Auditor::close`], not written.
    pub after_close: u64,
    /// Events waiting for the writer now.
    pub queued: u64,
}

/// Settings of an [`Auditor`].
#[must_use]
pub struct AuditorBuilder {
    sink: Arc<dyn AuditSink>,
    durability: Durability,
    fail_closed: bool,
    capacity: usize,
    overload: Overload,
    arguments: Option<ArgumentRecording>,
    write_delay: Duration,
}

impl fmt::Debug for AuditorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditorBuilder")
            .field("sink", &self.sink)
            .field("durability", &self.durability)
            .field("fail_closed", &self.fail_closed)
            .field("capacity", &self.capacity)
            .field("overload", &self.overload)
            .field("write_delay", &self.write_delay)
            .finish_non_exhaustive()
    }
}

impl AuditorBuilder {
    /// `buffered` (the default) or `durable`.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Refuse a request whose event cannot be written. Off by default: a failure is then
    /// counted and logged, and the request goes on.
    pub fn fail_closed(mut self, fail_closed: bool) -> Self {
        self.fail_closed = fail_closed;
        self
    }

    /// How many events may wait for the writer (default [`DEFAULT_QUEUE_CAPACITY`], at
    /// least 1).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// What a request does when the queue is full (default [`Overload::Block`]).
    pub fn overload(mut self, overload: Overload) -> Self {
        self.overload = overload;
        self
    }

    /// `buffered` mode: how long an event may wait in the queue while events keep coming
    /// (default [`DEFAULT_WRITE_DELAY`], 5 ms). The writer then looks at the queue on
    /// this interval instead of being woken for each event: a wake-up is a system call
    /// on the request path and a switch to the writer thread, which cost more per event
    /// than writing it (see docs/performance.md). A longer delay costs less per event
    /// and leaves more events in memory if the process is killed; [`Duration::ZERO`]
    /// wakes the writer for every event. An idle writer is always woken by the next
    /// event, and a queue of 512 events wakes a looking one. Events that a request
    /// waits for (`durable`, `fail_closed`) never wait for it.
    pub fn write_delay(mut self, delay: Duration) -> Self {
        self.write_delay = delay;
        self
    }

    /// How arguments are recorded. Default: a digest under a random key
    /// ([`ArgumentRecording::random_key`]), no clear values.
    pub fn arguments(mut self, arguments: ArgumentRecording) -> Self {
        self.arguments = Some(arguments);
        self
    }

    /// Starts the writer thread.
    ///
    /// # Errors
    /// The operating system's error when the thread cannot be started.
    pub fn build(self) -> std::io::Result<Auditor> {
        let shared = Arc::new(Shared {
            sink: self.sink,
            durability: self.durability,
            write_delay: self.write_delay,
            room: Semaphore::new(self.capacity),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            healthy: AtomicBool::new(true),
            counters: Counters::default(),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("rmcp-authz-audit".to_owned())
                .spawn(move || writer_loop(&shared))?
        };
        Ok(Auditor {
            inner: Arc::new(Inner {
                shared,
                fail_closed: self.fail_closed,
                overload: self.overload,
                arguments: self.arguments.unwrap_or_else(ArgumentRecording::random_key),
                writer: Mutex::new(Some(writer)),
            }),
        })
    }
}

/// The audit pipeline: a bounded queue in front of a sink, drained by a writer thread.
/// Cheap to clone; the writer stops when [`Auditor::close`] is called or the last clone
/// is dropped, after writing everything queued.
///
/// ```
/// use std::sync::Arc;
/// use rmcp_authz::audit::{AuditEvent, Auditor, DecisionKind, Durability, EventKind, MemorySink, Outcome};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = Arc::new(MemorySink::new());
/// let auditor = Auditor::builder(sink.clone()).durability(Durability::Durable).build()?;
/// let slot = auditor.reserve().await?;
/// slot.record(AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success)).await?;
/// assert_eq!(sink.events().len(), 1); // durable: written and synced before `record` returned
/// auditor.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Auditor {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    fail_closed: bool,
    overload: Overload,
    arguments: ArgumentRecording,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Auditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auditor")
            .field("sink", &self.inner.shared.sink)
            .field("durability", &self.inner.shared.durability)
            .field("fail_closed", &self.inner.fail_closed)
            .field("overload", &self.inner.overload)
            .field("arguments", &self.inner.arguments)
            .field("write_delay", &self.inner.shared.write_delay)
            .finish_non_exhaustive()
    }
}

/// State shared with the writer thread.
pub(super) struct Shared {
    pub(super) sink: Arc<dyn AuditSink>,
    pub(super) durability: Durability,
    /// See [`AuditorBuilder::write_delay`].
    pub(super) write_delay: Duration,
    /// The free places in the queue. A reserved place is taken out of the semaphore
    /// (`forget`) and given back by the writer, for a whole batch at once, when it takes
    /// the batch from the queue (or by the slot, when it is dropped unused).
    pub(super) room: Semaphore,
    pub(super) queue: Mutex<Queue>,
    pub(super) wake: Condvar,
    pub(super) healthy: AtomicBool,
    pub(super) counters: Counters,
}

/// What the writer thread is doing, as far as a new event is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum WriterState {
    /// Working: it takes everything queued when it is done, so nobody wakes it.
    #[default]
    Busy,
    /// Waiting at most [`AuditorBuilder::write_delay`] (`buffered` mode, events coming):
    /// only an event that someone waits for, or a long queue ([`WAKE_AT`]), wakes it.
    Looking,
    /// Waiting for an event to wake it.
    Asleep,
}

/// Tells a waiting request its event's result.
pub(super) type Ack = oneshot::Sender<Result<(), Arc<AuditError>>>;

#[derive(Default)]
pub(super) struct Queue {
    /// The events waiting for the writer, in order (as records, or as events).
    pub(super) events: VecDeque<Entry>,
    /// The requests waiting for the result of their event: its index in `events`, in
    /// increasing order.
    pub(super) acks: Vec<(usize, Ack)>,
    /// What the writer is doing, which decides whether a new event wakes it.
    pub(super) writer: WriterState,
    pub(super) closing: bool,
    /// Set by the writer when it has written everything and stopped.
    pub(super) closed: bool,
    /// Told when the writer has stopped.
    pub(super) on_closed: Vec<oneshot::Sender<()>>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) written: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) syncs: AtomicU64,
    pub(super) overload_waits: AtomicU64,
    pub(super) overload_refusals: AtomicU64,
    pub(super) fail_closed_refusals: AtomicU64,
    pub(super) after_close: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle: let the writer finish the queue, and wait for it.
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Auditor {
    /// Starts an auditor writing to `sink`.
    pub fn builder(sink: Arc<dyn AuditSink>) -> AuditorBuilder {
        AuditorBuilder {
            sink,
            durability: Durability::default(),
            fail_closed: false,
            capacity: DEFAULT_QUEUE_CAPACITY,
            overload: Overload::default(),
            arguments: None,
            write_delay: DEFAULT_WRITE_DELAY,
        }
    }

    /// Takes a place in the queue for one event, waiting for room or refusing as
    /// configured. Dropping the slot unused gives the place back.
    ///
    /// # Errors
    /// [`AuditFailure::Overloaded`] when the queue is full under [`Overload::Refuse`];
    /// [`AuditFailure::Closed`] after [`Auditor::close`].
    pub async fn reserve(&self) -> Result<AuditSlot, AuditFailure> {
        self.take_place().await?;
        Ok(AuditSlot {
            auditor: self.clone(),
            holds_place: true,
        })
    }

    /// Takes a place in the queue, as [`Auditor::reserve`] does; the caller then owns it
    /// and must fill it with [`Auditor::put`] or [`Auditor::put_detached`]. The future it
    /// returns has finished unless the queue is full under [`Overload::Block`].
    pub(crate) fn take_place(&self) -> Pending<'_> {
        let counters = &self.inner.shared.counters;
        let room = &self.inner.shared.room;
        let permit = match room.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Pending::done(Err(self.closed())),
            Err(TryAcquireError::NoPermits) => match self.inner.overload {
                Overload::Refuse => {
                    bump(&counters.overload_refusals, 1);
                    tracing::warn!(target: "rmcp_authz::audit", "audit queue full: request refused");
                    return Pending::done(Err(AuditFailure::Overloaded));
                }
                Overload::Block => {
                    bump(&counters.overload_waits, 1);
                    return Pending::Room(Box::pin(async move {
                        let permit = room.acquire().await.map_err(|_| self.closed())?;
                        permit.forget();
                        Ok(())
                    }));
                }
            },
        };
        // The place now belongs to the caller, then to the queued event; see `Shared::room`.
        permit.forget();
        Pending::done(Ok(()))
    }

    /// Queues `entry` in a place taken with [`Auditor::take_place`], before it returns.
    /// The future it returns finishes at once, or, in `durable` mode or under
    /// `fail_closed`, once the entry is written (and, in `durable` mode, synced).
    ///
    /// # Errors
    /// As [`AuditSlot::record`].
    pub(crate) fn put(&self, entry: Entry) -> Pending<'_> {
        let wait =
            matches!(self.inner.shared.durability, Durability::Durable) || self.inner.fail_closed;
        if !wait {
            return Pending::done(self.enqueue(entry, None));
        }
        let (tx, rx) = oneshot::channel();
        match self.enqueue(entry, Some(tx)) {
            Ok(()) => Pending::Written(rx),
            Err(e) => Pending::done(Err(e)),
        }
    }

    /// Queues `entry` in a place taken with [`Auditor::take_place`], without waiting for
    /// it (for a request that is going away: a cancelled call records its event from a
    /// destructor).
    pub(crate) fn put_detached(&self, entry: Entry) {
        if let Err(e) = self.enqueue(entry, None) {
            tracing::warn!(target: "rmcp_authz::audit", error = %e, "audit event not recorded");
        }
    }

    fn closed(&self) -> AuditFailure {
        bump(&self.inner.shared.counters.after_close, 1);
        AuditFailure::Closed
    }

    /// Whether requests are refused when their event cannot be written.
    pub fn is_fail_closed(&self) -> bool {
        self.inner.fail_closed
    }

    /// Whether the last write (and sync) failed: under `fail_closed` a request is then
    /// refused before its operation runs (its refusal is still recorded, which tells
    /// whether the log has recovered).
    pub fn is_failing(&self) -> bool {
        !self.inner.shared.healthy.load(Ordering::Acquire)
    }

    /// How long a `buffered` event may wait in the queue while events keep coming
    /// ([`AuditorBuilder::write_delay`]).
    pub fn write_delay(&self) -> Duration {
        self.inner.shared.write_delay
    }

    /// How arguments are recorded.
    pub fn arguments(&self) -> &ArgumentRecording {
        &self.inner.arguments
    }

    /// Counts a request refused under `fail_closed`.
    pub(crate) fn count_fail_closed_refusal(&self) {
        bump(&self.inner.shared.counters.fail_closed_refusals, 1);
    }

    /// What the pipeline has done so far.
    pub fn stats(&self) -> AuditStats {
        let c = &self.inner.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AuditStats {
            written: get(&c.written),
            failed: get(&c.failed),
            batches: get(&c.batches),
            syncs: get(&c.syncs),
            overload_waits: get(&c.overload_waits),
            overload_refusals: get(&c.overload_refusals),
            fail_closed_refusals: get(&c.fail_closed_refusals),
            after_close: get(&c.after_close),
            queued: self.inner.shared.lock().events.len() as u64,
        }
    }

    /// Stops taking events, writes and syncs everything queued, and returns when the
    /// writer has stopped. Later events are refused with [`AuditFailure::Closed`].
    pub async fn close(&self) {
        self.inner.shared.room.close();
        let done = {
            let mut queue = self.inner.shared.lock();
            if queue.closed {
                return;
            }
            queue.closing = true;
            let (tx, rx) = oneshot::channel();
            queue.on_closed.push(tx);
            rx
        };
        self.inner.shared.wake.notify_all();
        let _ = done.await;
    }

    /// Queues `event`, whose place was reserved, and wakes the writer if it sleeps.
    fn enqueue(&self, event: Entry, ack: Option<Ack>) -> Result<(), AuditFailure> {
        let shared = &*self.inner.shared;
        let wake = {
            let mut queue = shared.lock();
            if queue.closed {
                drop(queue);
                // The writer is gone: nobody else gives the place back.
                shared.room.add_permits(1);
                return Err(self.closed());
            }
            let waited_for = ack.is_some();
            if let Some(ack) = ack {
                let index = queue.events.len();
                queue.acks.push((index, ack));
            }
            queue.events.push_back(event);
            let wake = match queue.writer {
                WriterState::Busy => false,
                WriterState::Looking => waited_for || queue.events.len() >= WAKE_AT,
                WriterState::Asleep => true,
            };
            if wake {
                queue.writer = WriterState::Busy;
            }
            wake
        };
        if wake {
            shared.wake.notify_one();
        }
        Ok(())
    }
}

/// A place in the audit queue for one event, taken by [`Auditor::reserve`].
#[derive(Debug)]
#[must_use = "a slot records nothing until `record` is called"]
pub struct AuditSlot {
    auditor: Auditor,
    /// Whether the slot still holds its place (until its event is queued).
    holds_place: bool,
}

impl Drop for AuditSlot {
    /// An unused slot gives its place back.
    fn drop(&mut self) {
        if self.holds_place {
            self.auditor.inner.shared.room.add_permits(1);
        }
    }
}

impl AuditSlot {
    /// Queues `event`. Returns once it is queued, or, in `durable` mode or under
    /// `fail_closed`, once it is written (and, in `durable` mode, synced).
    ///
    /// # Errors
    /// [`AuditFailure::Write`] when the sink failed (only reported when waiting for the
    /// write); [`AuditFailure::Closed`] after [`Auditor::close`].
    pub async fn record(mut self, event: AuditEvent) -> Result<(), AuditFailure> {
        if !std::mem::take(&mut self.holds_place) {
            return Err(AuditFailure::Closed);
        }
        self.auditor.put(Entry::Event(event)).await
    }

    /// Queues `event` without waiting for it (for a request that is going away: a
    /// cancelled call records its event from a destructor).
    pub fn record_detached(mut self, event: AuditEvent) {
        if std::mem::take(&mut self.holds_place) {
            self.auditor.put_detached(Entry::Event(event));
        }
    }
}
