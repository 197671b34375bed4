//! The writer thread of the pipeline: it takes every queued event at once, hands the
//! batch to the sink in one call, syncs as the durability asks (one `fsync` for a whole
//! batch, or on an interval), and answers the requests that wait for their events.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use std::collections::VecDeque;

use super::AuditEvent;
use super::limits;
use super::pipeline::{Ack, Durability, MAX_BATCH, POLL_IDLE, Queue, Shared, WriterState, bump};
use super::record::Entry;
use super::spare::Spare;

/// The writer thread: waits for events, writes each batch with one call, syncs (each
/// batch in `durable` mode; on an interval in `buffered` mode), and tells the waiting
/// requests.
pub(super) fn writer_loop(shared: &Shared) {
    // However the loop ends (a sink that panics included), waiting closers are told and
    // later events are refused rather than queued for nobody.
    struct Stopped<'a>(&'a Shared);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.room.close();
            let mut queue = self.0.lock();
            queue.closed = true;
            // Only left after a panic: their requests are told the log is closed.
            queue.events.clear();
            queue.acks.clear();
            for tx in queue.on_closed.drain(..) {
                let _ = tx.send(());
            }
        }
    }
    let _stopped = Stopped(shared);
    let interval = match shared.durability {
        Durability::Buffered { flush_interval } => Some(flush_interval),
        Durability::Durable => None,
    };
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    // When the writer last found events (it looks at the queue while they keep coming;
    // until the first, it sleeps).
    let mut last_events: Option<Instant> = None;
    // The batch taken from the queue, and its events; all keep their allocations from
    // batch to batch.
    let mut entries: Vec<Entry> = Vec::new();
    let mut events: Vec<AuditEvent> = Vec::new();
    // The strings of written events, for the next ones.
    let mut spare = Spare::default();
    let mut acks: Vec<(usize, Ack)> = Vec::new();
    loop {
        let closing = {
            let mut queue = shared.lock();
            loop {
                if !queue.events.is_empty() || queue.closing {
                    break;
                }
                // Until the next sync is due, when there is something to sync.
                let sync_due = match interval {
                    Some(interval) if unsynced => {
                        let left = interval.saturating_sub(last_sync.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        Some(left)
                    }
                    _ => None,
                };
                let tick = shared.write_delay;
                let looking = interval.is_some()
                    && !tick.is_zero()
                    && last_events.is_some_and(|at| at.elapsed() < POLL_IDLE);
                let timeout = if looking {
                    queue.writer = WriterState::Looking;
                    Some(sync_due.map_or(tick, |due| due.min(tick)))
                } else {
                    queue.writer = WriterState::Asleep;
                    sync_due
                };
                queue = match timeout {
                    Some(timeout) => {
                        shared
                            .wake
                            .wait_timeout(queue, timeout)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner()),
                };
            }
            queue.writer = WriterState::Busy;
            take_batch(&mut queue, &mut entries, &mut acks);
            queue.closing && queue.events.is_empty()
        };
        if !entries.is_empty() {
            last_events = Some(Instant::now());
            // The batch has left the queue: its places are free again, all at once.
            shared.room.add_permits(entries.len());
            // The requests' records become events here, off the request path.
            let records = entries.iter().any(Entry::is_record);
            events.extend(entries.drain(..).map(|e| e.into_event(&mut spare)));
            write_batch(shared, &mut events, &mut acks, interval.is_none());
            if records {
                for event in events.drain(..) {
                    spare.keep(event);
                }
            } else {
                // Events users made whole take nothing from the spare: none to keep.
                events.clear();
            }
            unsynced = interval.is_some();
        }
        let due = interval.is_some_and(|i| last_sync.elapsed() >= i);
        if unsynced && (due || closing) {
            sync(shared);
            unsynced = false;
            last_sync = Instant::now();
        }
        if closing {
            let mut queue = shared.lock();
            if queue.events.is_empty() {
                // Closed under the same lock that saw the queue empty: nothing can slip in.
                queue.closed = true;
                return;
            }
        }
    }
}

/// Moves up to [`MAX_BATCH`] queued events (and their acks) into the empty `events` and
/// `acks`. Taking the whole queue swaps buffers, moving no event.
fn take_batch(queue: &mut Queue, events: &mut Vec<Entry>, acks: &mut Vec<(usize, Ack)>) {
    if queue.events.len() <= MAX_BATCH {
        let taken = std::mem::replace(&mut queue.events, VecDeque::from(std::mem::take(events)));
        // Free when the queue's buffer starts at its allocation, as one that is only
        // pushed to and then taken whole does.
        *events = Vec::from(taken);
        std::mem::swap(&mut queue.acks, acks);
    } else {
        events.extend(queue.events.drain(..MAX_BATCH));
        let waiting = queue.acks.partition_point(|(i, _)| *i < MAX_BATCH);
        acks.extend(queue.acks.drain(..waiting));
        for (i, _) in &mut queue.acks {
            *i -= MAX_BATCH;
        }
    }
}

/// Writes `events` (and syncs them in `durable` mode), tells `acks` the result, and
/// empties `acks` (the caller keeps the events' strings).
fn write_batch(
    shared: &Shared,
    events: &mut [AuditEvent],
    acks: &mut Vec<(usize, Ack)>,
    durable: bool,
) {
    let counters = &shared.counters;
    let n = events.len() as u64;
    // Every sink sees bounded events; off the request path, and a few length checks an
    // event when nothing is too long.
    for event in events.iter_mut() {
        limits::bound(event);
    }
    let result = shared.sink.commit(events, durable);
    bump(&counters.batches, 1);
    if durable {
        bump(&counters.syncs, 1);
    }
    let result = result.map_err(Arc::new);
    match &result {
        Ok(()) => {
            bump(&counters.written, n);
            if !shared.healthy.swap(true, Ordering::AcqRel) {
                tracing::warn!(target: "rmcp_authz::audit", "audit log writable again");
            }
        }
        Err(e) => {
            bump(&counters.failed, n);
            shared.healthy.store(false, Ordering::Release);
            tracing::error!(target: "rmcp_authz::audit", error = %e, events = n, "audit events could not be written");
        }
    }
    // Answer first; the events are kept for their strings after.
    for (_, ack) in acks.drain(..) {
        let _ = ack.send(result.clone());
    }
}

fn sync(shared: &Shared) {
    bump(&shared.counters.syncs, 1);
    if let Err(e) = shared.sink.flush(true) {
        shared.healthy.store(false, Ordering::Release);
        tracing::error!(target: "rmcp_authz::audit", error = %e, "audit file could not be synced");
    }
}
