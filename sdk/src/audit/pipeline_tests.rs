//! Tests of the writer pipeline with sinks that count, stall and fail on command.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::*;

/// A sink whose writes can be held, made to fail, and whose syncs can be slowed.
#[derive(Debug, Default)]
struct TestSink {
    events: Mutex<Vec<AuditEvent>>,
    writes: AtomicUsize,
    syncs: AtomicUsize,
    fail: AtomicBool,
    held: Mutex<bool>,
    released: Condvar,
    sync_delay: Mutex<Duration>,
}

impl TestSink {
    fn hold(&self) {
        *self.held.lock().unwrap() = true;
    }

    fn release(&self) {
        *self.held.lock().unwrap() = false;
        self.released.notify_all();
    }

    fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

impl AuditSink for TestSink {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.released.wait(held).unwrap();
        }
        drop(held);
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(AuditError::Io {
                path: "test".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }

    fn flush(&self, durable: bool) -> Result<(), AuditError> {
        if durable {
            std::thread::sleep(*self.sync_delay.lock().unwrap());
            self.syncs.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn event(n: usize) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success);
    e.target = Some(format!("tool{n}"));
    e
}

async fn record(auditor: &Auditor, n: usize) -> Result<(), AuditFailure> {
    auditor.reserve().await?.record(event(n)).await
}

/// Polls `condition` for up to 10 s (a bound on a hang, not a timing assertion).
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn durable_answers_after_the_sync_and_groups_concurrent_events() {
    let sink = Arc::new(TestSink::default());
    *sink.sync_delay.lock().unwrap() = Duration::from_millis(50);
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Durable)
        .build()
        .unwrap();
    record(&auditor, 0).await.unwrap();
    assert_eq!(sink.count(), 1);
    assert_eq!(
        sink.syncs.load(Ordering::SeqCst),
        1,
        "answered only after the sync"
    );

    let tasks: Vec<_> = (1..=40)
        .map(|n| {
            let auditor = auditor.clone();
            tokio::spawn(async move { record(&auditor, n).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sink.count(), 41);
    let syncs = sink.syncs.load(Ordering::SeqCst);
    assert!(
        syncs < 41,
        "40 concurrent events took {syncs} syncs: no group commit"
    );
    let stats = auditor.stats();
    assert_eq!(stats.written, 41);
    assert_eq!(stats.syncs as usize, syncs);
}

#[tokio::test]
async fn buffered_answers_at_once_and_syncs_on_the_interval() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Buffered {
            flush_interval: Duration::from_millis(20),
        })
        .build()
        .unwrap();
    sink.hold();
    // Held writer, yet `record` returns: buffered mode does not wait for the write.
    record(&auditor, 0).await.unwrap();
    assert_eq!(sink.count(), 0);
    sink.release();
    eventually("the event is written", || sink.count() == 1).await;
    eventually("the file is synced", || {
        sink.syncs.load(Ordering::SeqCst) >= 1
    })
    .await;
}

#[tokio::test]
async fn a_busy_buffered_writer_looks_at_the_queue_only_every_write_delay() {
    let sink = Arc::new(TestSink::default());
    let hour = Duration::from_secs(3600);
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Buffered {
            flush_interval: hour,
        })
        .write_delay(hour)
        .build()
        .unwrap();
    // An idle writer is woken by the first event.
    record(&auditor, 0).await.unwrap();
    eventually("the first event is written", || sink.count() == 1).await;
    // Let it finish that batch (microseconds) and start looking; it keeps looking for
    // 100 ms after the batch before it would sleep until woken.
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Events keep coming: the writer now looks at the queue once an hour, and these two
    // neither wake it nor wait for it.
    record(&auditor, 1).await.unwrap();
    record(&auditor, 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sink.count(),
        1,
        "the writer was woken before its write delay"
    );
    assert_eq!(auditor.stats().queued, 2);
    // Nothing is lost: closing writes them.
    auditor.close().await;
    assert_eq!(sink.count(), 3);
}

#[tokio::test]
async fn a_zero_write_delay_wakes_the_writer_for_every_event() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone())
        .write_delay(Duration::ZERO)
        .build()
        .unwrap();
    for n in 0..3 {
        record(&auditor, n).await.unwrap();
        eventually("the event is written", || sink.count() == n + 1).await;
    }
    assert_eq!(auditor.stats().batches, 3);
    auditor.close().await;
}

#[tokio::test]
async fn a_full_queue_refuses_under_refuse_and_counts_it() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone())
        .queue_capacity(1)
        .overload(Overload::Refuse)
        .build()
        .unwrap();
    sink.hold();
    record(&auditor, 0).await.unwrap(); // taken by the writer, which is held
    eventually("the writer holds the first event", || {
        auditor.stats().queued == 0
    })
    .await;
    record(&auditor, 1).await.unwrap(); // waits in the queue, filling it
    let refused = auditor.reserve().await;
    assert!(
        matches!(refused, Err(AuditFailure::Overloaded)),
        "{refused:?}"
    );
    assert_eq!(auditor.stats().overload_refusals, 1);
    sink.release();
    eventually("both queued events are written", || sink.count() == 2).await;
}

#[tokio::test]
async fn a_full_queue_blocks_under_block_until_there_is_room() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone())
        .queue_capacity(1)
        .build()
        .unwrap();
    sink.hold();
    record(&auditor, 0).await.unwrap();
    eventually("the writer holds the first event", || {
        auditor.stats().queued == 0
    })
    .await;
    record(&auditor, 1).await.unwrap();
    let blocked = {
        let auditor = auditor.clone();
        tokio::spawn(async move { record(&auditor, 2).await })
    };
    eventually("the third request waits", || {
        auditor.stats().overload_waits == 1
    })
    .await;
    assert!(!blocked.is_finished());
    sink.release();
    blocked.await.unwrap().unwrap();
    eventually("all three are written", || sink.count() == 3).await;
    assert_eq!(auditor.stats().overload_refusals, 0);
}

#[tokio::test]
async fn fail_closed_reports_the_failure_and_recovers() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone())
        .fail_closed(true)
        .build()
        .unwrap();
    sink.fail.store(true, Ordering::SeqCst);
    let failed = record(&auditor, 0).await;
    assert!(matches!(failed, Err(AuditFailure::Write(_))), "{failed:?}");
    assert!(auditor.is_failing());
    assert_eq!(auditor.stats().failed, 1);
    sink.fail.store(false, Ordering::SeqCst);
    record(&auditor, 1).await.unwrap();
    assert!(!auditor.is_failing());
}

#[tokio::test]
async fn without_fail_closed_a_failure_is_counted_not_returned() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone()).build().unwrap();
    sink.fail.store(true, Ordering::SeqCst);
    record(&auditor, 0).await.unwrap();
    eventually("the failure is counted", || auditor.stats().failed == 1).await;
    assert!(auditor.is_failing());
}

#[tokio::test]
async fn close_writes_and_syncs_everything_queued() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Buffered {
            flush_interval: Duration::from_secs(3600),
        })
        .build()
        .unwrap();
    sink.hold();
    for n in 0..100 {
        record(&auditor, n).await.unwrap();
    }
    sink.release();
    auditor.close().await;
    assert_eq!(sink.count(), 100);
    assert!(sink.syncs.load(Ordering::SeqCst) >= 1, "closing syncs");
    assert!(matches!(auditor.reserve().await, Err(AuditFailure::Closed)));
    assert_eq!(auditor.stats().after_close, 1);
    auditor.close().await; // twice is fine
}

#[test]
fn dropping_the_last_handle_writes_everything_queued() {
    let sink = Arc::new(TestSink::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let auditor = Auditor::builder(sink.clone()).build().unwrap();
        sink.hold();
        for n in 0..10 {
            record(&auditor, n).await.unwrap();
        }
        sink.release();
    });
    assert_eq!(sink.count(), 10);
}

#[tokio::test]
async fn an_unused_slot_gives_its_place_back() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone())
        .queue_capacity(1)
        .overload(Overload::Refuse)
        .build()
        .unwrap();
    for _ in 0..3 {
        let slot = auditor.reserve().await.unwrap();
        drop(slot);
    }
    assert_eq!(auditor.stats().overload_refusals, 0);
}

#[tokio::test]
async fn a_rotating_file_continues_its_chain_across_files() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let path = dir.join("audit.jsonl");
    let sink = Arc::new(JsonLines::open(&path).unwrap().rotate_at(2048));
    let auditor = Auditor::builder(sink)
        .durability(Durability::Durable)
        .build()
        .unwrap();
    for n in 0..40 {
        record(&auditor, n).await.unwrap();
    }
    auditor.close().await;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &path)
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "40 events of ~300 bytes rotate at 2 KiB: {files:?}"
    );
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 2048, "{f:?}");
    }
    files.push(path.clone());
    let report = verify_chain(&files).unwrap();
    assert_eq!(report.records, 40);
    assert!(report.starts_at_genesis);
    // The active file alone continues an earlier chain (rotated away, as far as it knows).
    let alone = verify_chain_with(&[&path], &VerifyOptions::default().rotated(true)).unwrap();
    assert!(!alone.starts_at_genesis);
}

/// Every sink behind an `Auditor` sees events cut to the size bounds, not only the file.
#[tokio::test]
async fn sinks_receive_events_cut_to_the_size_bounds() {
    let sink = Arc::new(TestSink::default());
    let auditor = Auditor::builder(sink.clone())
        .durability(Durability::Durable)
        .build()
        .unwrap();
    let mut huge = event(0);
    huge.target = Some("t".repeat(600 * 1024));
    huge.scopes_granted = vec!["s".to_owned(); MAX_LIST_ITEMS + 1];
    auditor.reserve().await.unwrap().record(huge).await.unwrap();
    record(&auditor, 1).await.unwrap();
    let events = sink.events.lock().unwrap().clone();
    let target = events[0].target.as_deref().unwrap();
    assert!(target.len() <= MAX_FIELD_BYTES && target.ends_with(TRUNCATION_MARKER));
    assert_eq!(events[0].scopes_granted.len(), MAX_LIST_ITEMS);
    assert_eq!(events[0].truncated, ["scopes_granted", "target"]);
    assert_eq!(events[1].target.as_deref(), Some("tool1"));
    assert!(events[1].truncated.is_empty());
    auditor.close().await;
}
