//! Events per second through the audit pipeline ([`Auditor`]), for each durability mode,
//! and what enqueueing one event costs the request path.
//!
//! Cases, all measured in one run so that their ratios compare like with like:
//! - `enqueue/mpsc_baseline`: the floor for handing an event to another thread: a bare
//!   bounded tokio `mpsc` `send` of the same event to a thread that drops it.
//! - `enqueue/auditor`: the request path's cost alone: `reserve` + `record` into a
//!   `Durability::Buffered` auditor whose writer keeps up (a sink that discards), per
//!   event. Events are sent in bursts of 1024 (a quarter of the queue), each started once
//!   the writer has taken the last one, so the queue never pushes back; only the sends are
//!   timed.
//! - `baseline_noop`: one producer, the pipeline into a sink that serializes each event
//!   with `serde_json` and discards it (no file).
//! - `buffered_jsonl`: one producer, `Durability::Buffered` (1 s flush interval) into a
//!   hash-chained JSON Lines file: what the writer thread sustains.
//! - `durable_jsonl/1`: one producer, `Durability::Durable` into a JSON Lines file: each
//!   `record` waits for its own `fsync`.
//! - `durable_jsonl/64`: 64 concurrent producers (tokio tasks), `Durability::Durable`:
//!   events waiting at the same time share one `fsync` (group commit).
//!
//! - with feature `postgres`, the same three pipeline cases into the PostgreSQL sink
//!   (`buffered_postgres/1`, `buffered_postgres/64`, `durable_postgres/64`), on a fresh
//!   local PostgreSQL cluster the bench starts (as the tests do, under
//!   `target/pg-tests/`; `fsync` on): one statement and one commit per batch, a
//!   synchronous commit in `durable` mode.
//!
//! In the pipeline cases the events are built before the clock starts (building one, with
//! its UUID and timestamp, is the caller's cost, not the pipeline's), and the clock of an
//! iteration batch stops once every event of the batch has been written by the sink (and,
//! in `durable` mode, synced), not merely queued, so a case cannot look fast by leaving
//! its work in the queue. After each case the bench prints to stderr the events/s over
//! every timed iteration and the auditor's [`AuditStats`] (events per write, syncs per
//! event).
//!
//! Run with `cargo bench -p rmcp-authz --bench audit_pipeline` (about a minute). Files are
//! written under a fresh directory in the system temp dir (`TMPDIR`), removed at the end.

use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use rmcp_authz::audit::{
    AuditError, AuditEvent, AuditSink, AuditStats, Auditor, DecisionKind, Durability, EventKind,
    JsonLines, Outcome,
};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// A sink that pays for serializing each event, as a file sink would, and keeps nothing.
#[derive(Debug, Default)]
struct NoopSink;

impl AuditSink for NoopSink {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        for event in events {
            let line =
                serde_json::to_vec(event).map_err(|e| AuditError::Serialize(e.to_string()))?;
            black_box(line);
        }
        Ok(())
    }
}

/// A sink that discards: a writer that always keeps up.
#[derive(Debug, Default)]
struct DiscardSink;

impl AuditSink for DiscardSink {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        black_box(events);
        Ok(())
    }
}

/// A realistic allowed tool call: about 430 bytes of JSON, about 510 in the file with the
/// chain hash.
fn event(n: u64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success);
    e.agent = Some("research-agent".to_owned());
    e.subject = Some("user-4f1c2a".to_owned());
    e.scopes_granted = vec!["notes:read".to_owned()];
    e.target = Some("search_notes".to_owned());
    e.method = Some("tools/call".to_owned());
    e.arguments_hmac =
        Some("3b8f1e0c9a7d5b2e4f6a8c0d1e3f5a7b9c1d3e5f7a9b0c2d4e6f8a0b1c3d5e7f".to_owned());
    e.duration_ms = Some(1.25);
    e.request_id = Some(n.to_string());
    e.transport = Some("http".to_owned());
    e
}

/// Events and time over every timed iteration of a case (warm-up included), to print
/// events/s next to the auditor's stats.
#[derive(Default)]
struct Tally {
    events: Cell<u64>,
    time: Cell<Duration>,
}

impl Tally {
    fn add(&self, events: u64, time: Duration) -> Duration {
        self.events.set(self.events.get() + events);
        self.time.set(self.time.get() + time);
        time
    }

    fn per_second(&self) -> f64 {
        self.events.get() as f64 / self.time.get().as_secs_f64().max(1e-9)
    }
}

/// The most events built ahead of one timed stretch (memory stays bounded).
const CHUNK: u64 = 64 * 1024;

/// Records `iters` events spread over `producers` concurrent tasks, and returns the time
/// until all of them are written by the sink. Events are built untimed, in chunks.
fn run(rt: &Runtime, auditor: &Auditor, producers: u64, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let batches: Vec<Vec<AuditEvent>> = (0..producers)
            .map(|p| {
                let count = n / producers + u64::from(p < n % producers);
                (0..count).map(|i| event(done + i)).collect()
            })
            .collect();
        total += run_chunk(rt, auditor, batches);
        done += n;
    }
    total
}

fn run_chunk(rt: &Runtime, auditor: &Auditor, batches: Vec<Vec<AuditEvent>>) -> Duration {
    let n: usize = batches.iter().map(Vec::len).sum();
    let target = auditor.stats().written + n as u64;
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = JoinSet::new();
        for events in batches {
            let auditor = auditor.clone();
            tasks.spawn(async move {
                for event in events {
                    let slot = auditor.reserve().await.expect("reserve a queue slot");
                    slot.record(event).await.expect("record an event");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a producer task panicked");
        }
    });
    // Buffered records return once queued: wait for the writer to catch up. A failed
    // write would never be counted as written, so stop rather than wait forever.
    wait_written(auditor, target);
    start.elapsed()
}

fn wait_written(auditor: &Auditor, target: u64) {
    loop {
        let stats = auditor.stats();
        assert_eq!(stats.failed, 0, "the sink failed to write events");
        if stats.written >= target {
            break;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// Events per burst in the enqueue cases: a quarter of the default queue, so a burst
/// never waits for room.
const BURST: u64 = 1024;

/// Times `reserve` + `record` alone for `iters` events into `auditor`, in bursts started
/// once the writer has written the previous one. `sent` counts the events sent so far.
fn enqueue_auditor(rt: &Runtime, auditor: &Auditor, sent: &Cell<u64>, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = BURST.min(iters - done);
        let events: Vec<AuditEvent> = (0..n).map(|i| event(done + i)).collect();
        wait_written(auditor, sent.get());
        total += rt.block_on(async {
            let start = Instant::now();
            for event in events {
                let slot = auditor.reserve().await.expect("reserve a queue slot");
                slot.record(event).await.expect("record an event");
            }
            start.elapsed()
        });
        sent.set(sent.get() + n);
        done += n;
    }
    total
}

/// The same for a bare bounded tokio `mpsc` channel (the auditor's queue size) to a
/// thread that drops what it receives.
struct MpscBaseline {
    tx: Option<tokio::sync::mpsc::Sender<AuditEvent>>,
    received: Arc<AtomicU64>,
    sent: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MpscBaseline {
    fn new() -> MpscBaseline {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<AuditEvent>(4096);
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let received = Arc::clone(&received);
            std::thread::spawn(move || {
                while let Some(event) = rx.blocking_recv() {
                    drop(black_box(event));
                    received.fetch_add(1, Ordering::Release);
                }
            })
        };
        MpscBaseline {
            tx: Some(tx),
            received,
            sent: 0,
            thread: Some(thread),
        }
    }

    fn run(&mut self, rt: &Runtime, iters: u64) -> Duration {
        let tx = self.tx.clone().expect("the channel is open");
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let n = BURST.min(iters - done);
            let events: Vec<AuditEvent> = (0..n).map(|i| event(done + i)).collect();
            while self.received.load(Ordering::Acquire) < self.sent {
                std::thread::sleep(Duration::from_micros(20));
            }
            total += rt.block_on(async {
                let start = Instant::now();
                for event in events {
                    tx.send(event).await.expect("the receiver is running");
                }
                start.elapsed()
            });
            self.sent += n;
            done += n;
        }
        total
    }
}

impl Drop for MpscBaseline {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Closes `auditor` (so everything is written and synced) and prints what it did.
fn report(rt: &Runtime, name: &str, auditor: Auditor, tally: &Tally, file: Option<&Path>) {
    rt.block_on(auditor.close());
    let AuditStats {
        written,
        failed,
        batches,
        syncs,
        ..
    } = auditor.stats();
    let per_event = |n: u64| n as f64 / written.max(1) as f64;
    let bytes = file
        .and_then(|f| std::fs::metadata(f).ok())
        .map(|m| format!(" file_bytes/event={:.0}", per_event(m.len())))
        .unwrap_or_default();
    eprintln!(
        "{name}: {:.0} events/s over all timed iterations ({} events); stats after close: \
         written={written} failed={failed} batches={batches} syncs={syncs} \
         events/write={:.2} syncs/event={:.4}{bytes}",
        tally.per_second(),
        tally.events.get(),
        written as f64 / batches.max(1) as f64,
        per_event(syncs),
    );
}

/// A pipeline case: `producers` concurrent producers into `auditor`, then its report.
fn pipeline_case(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    auditor: Auditor,
    producers: u64,
    file: Option<&Path>,
) {
    let tally = Tally::default();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| tally.add(iters, run(rt, &auditor, producers, iters)));
    });
    report(rt, name, auditor, &tally, file);
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
    }
}

fn audit_pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("create the bench temp dir");
    let line = serde_json::to_vec(&event(0)).expect("serialize an event");
    eprintln!(
        "audit_pipeline: event JSON is {} bytes before the chain hash; files under {}",
        line.len(),
        dir.path().display()
    );

    let mut group = c.benchmark_group("audit_pipeline");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    // Iteration counts grow linearly per sample by default; with fsync-bound cases that
    // overshoots the time budget, so every sample runs the same count.
    group.sampling_mode(SamplingMode::Flat);

    let buffered = Durability::Buffered {
        flush_interval: rmcp_authz::audit::DEFAULT_FLUSH_INTERVAL,
    };

    // The enqueue cases time only the sends, a third of their wall time: keep them short.
    group.measurement_time(Duration::from_secs(2));
    let mut mpsc = MpscBaseline::new();
    let tally = Tally::default();
    group.bench_function("enqueue/mpsc_baseline", |b| {
        b.iter_custom(|iters| tally.add(iters, mpsc.run(&rt, iters)));
    });
    drop(mpsc);
    let baseline_ns = 1e9 / tally.per_second();
    let auditor = Auditor::builder(Arc::new(DiscardSink))
        .durability(buffered)
        .build()
        .expect("start the auditor");
    let tally = Tally::default();
    let sent = Cell::new(0);
    group.bench_function("enqueue/auditor", |b| {
        b.iter_custom(|iters| tally.add(iters, enqueue_auditor(&rt, &auditor, &sent, iters)));
    });
    let enqueue_ns = 1e9 / tally.per_second();
    eprintln!(
        "enqueue: reserve + record {enqueue_ns:.0} ns/event, mpsc send {baseline_ns:.0} \
         ns/event (ratio {:.2}), over all timed iterations",
        enqueue_ns / baseline_ns
    );
    report(&rt, "enqueue/auditor", auditor, &tally, None);

    group.measurement_time(Duration::from_secs(5));
    let auditor = Auditor::builder(Arc::new(NoopSink))
        .durability(buffered)
        .build()
        .expect("start the auditor");
    pipeline_case(&mut group, &rt, "baseline_noop", auditor, 1, None);

    let path = dir.path().join("buffered.jsonl");
    let sink = JsonLines::open(&path).expect("open the audit file");
    let auditor = Auditor::builder(Arc::new(sink))
        .durability(buffered)
        .build()
        .expect("start the auditor");
    pipeline_case(&mut group, &rt, "buffered_jsonl", auditor, 1, Some(&path));

    for producers in [1_u64, 64] {
        let path = dir.path().join(format!("durable-{producers}.jsonl"));
        let sink = JsonLines::open(&path).expect("open the audit file");
        let auditor = Auditor::builder(Arc::new(sink))
            .durability(Durability::Durable)
            .build()
            .expect("start the auditor");
        let name = format!("durable_jsonl/{producers}");
        pipeline_case(&mut group, &rt, &name, auditor, producers, Some(&path));
    }

    #[cfg(feature = "postgres")]
    postgres_cases(&mut group, &rt, buffered);

    group.finish();
}

/// A local PostgreSQL cluster, started as the tests start theirs.
#[cfg(feature = "postgres")]
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/src/postgres.rs"]
mod pg;

/// The PostgreSQL sink's cases, beside the file's: buffered with one and with 64
/// producers, durable with 64.
#[cfg(feature = "postgres")]
fn postgres_cases(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, buffered: Durability) {
    use rmcp_authz::postgres::{Database, PostgresSink};

    let server = pg::TestPostgres::start();
    let database = Database::parse(&server.url).expect("the cluster's URL");
    for (name, durability, producers) in [
        ("buffered_postgres/1", buffered, 1),
        ("buffered_postgres/64", buffered, 64),
        ("durable_postgres/64", Durability::Durable, 64),
    ] {
        let sink = PostgresSink::builder(database.clone(), name)
            .migrate(true)
            .connect()
            .expect("connect the PostgreSQL sink");
        let auditor = Auditor::builder(Arc::new(sink))
            .durability(durability)
            .build()
            .expect("start the auditor");
        pipeline_case(group, rt, name, auditor, producers, None);
    }
    eprintln!(
        "postgres: {} rows in rmcp_authz_audit after the cases",
        server.psql("SELECT count(*) FROM rmcp_authz_audit")
    );
}

// What `criterion_group!`/`criterion_main!` expand to, written out: the macros declare an
// undocumented `pub fn`, which the workspace's `missing_docs` lint rejects.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    audit_pipeline(&mut criterion);
    criterion.final_summary();
}
