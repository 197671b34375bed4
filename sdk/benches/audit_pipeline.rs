//! Events per second through the audit pipeline ([`Auditor`]), for each durability mode.
//!
//! Cases, all measured in one run so that their ratios compare like with like:
//! - `baseline_noop`: one producer, the pipeline into a sink that serializes each event
//!   with `serde_json` and discards it (no file). Every ratio in `docs/performance.md` is
//!   against this case.
//! - `buffered_jsonl`: one producer, `Durability::Buffered` (1 s flush interval) into a
//!   hash-chained JSON Lines file.
//! - `durable_jsonl/1`: one producer, `Durability::Durable` into a JSON Lines file: each
//!   `record` waits for its own `fsync`.
//! - `durable_jsonl/64`: 64 concurrent producers, `Durability::Durable`: events waiting at
//!   the same time share one `fsync` (group commit).
//!
//! The clock of an iteration batch stops once every event of the batch has been written by
//! the sink (and, in `durable` mode, synced), not merely queued, so a case cannot look fast
//! by leaving its work in the queue. After each case the auditor's [`AuditStats`] are
//! printed to stderr (batches and syncs per event).
//!
//! Run with `cargo bench -p rmcp-authz --bench audit_pipeline`. Files are written under a
//! fresh directory in the system temp dir (`TMPDIR`), removed at the end.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
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

/// A directory for the audit files of this run, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("rmcp-authz-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create the bench temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Records `iters` events spread over `producers` concurrent tasks, and returns the time
/// until all of them are written by the sink.
fn run(rt: &Runtime, auditor: &Auditor, producers: u64, iters: u64) -> Duration {
    let target = auditor.stats().written + iters;
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = JoinSet::new();
        for p in 0..producers {
            let count = iters / producers + u64::from(p < iters % producers);
            let auditor = auditor.clone();
            tasks.spawn(async move {
                for i in 0..count {
                    let slot = auditor.reserve().await.expect("reserve a queue slot");
                    slot.record(event(i)).await.expect("record an event");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a producer task panicked");
        }
    });
    // Buffered records return once queued: wait for the writer to catch up. A failed
    // write would never be counted as written, so stop rather than wait forever.
    loop {
        let stats = auditor.stats();
        assert_eq!(stats.failed, 0, "the sink failed to write events");
        if stats.written >= target {
            break;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    start.elapsed()
}

/// Closes `auditor` (so everything is written and synced) and prints what it did.
fn report(rt: &Runtime, name: &str, auditor: Auditor, file: Option<&Path>) {
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
        "{name}: stats after close: written={written} failed={failed} batches={batches} \
         syncs={syncs} events/batch={:.2} syncs/event={:.4}{bytes}",
        written as f64 / batches.max(1) as f64,
        per_event(syncs),
    );
}

fn audit_pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = TempDir::new();
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
    group.measurement_time(Duration::from_secs(6));
    // Iteration counts grow linearly per sample by default; with fsync-bound cases that
    // overshoots the time budget, so every sample runs the same count.
    group.sampling_mode(SamplingMode::Flat);

    let buffered = Durability::Buffered {
        flush_interval: rmcp_authz::audit::DEFAULT_FLUSH_INTERVAL,
    };

    let auditor = Auditor::builder(Arc::new(NoopSink))
        .durability(buffered)
        .build()
        .expect("start the auditor");
    group.bench_function("baseline_noop", |b| {
        b.iter_custom(|iters| run(&rt, &auditor, 1, iters));
    });
    report(&rt, "baseline_noop", auditor, None);

    let path = dir.path().join("buffered.jsonl");
    let sink = JsonLines::open(&path).expect("open the audit file");
    let auditor = Auditor::builder(Arc::new(sink))
        .durability(buffered)
        .build()
        .expect("start the auditor");
    group.bench_function("buffered_jsonl", |b| {
        b.iter_custom(|iters| run(&rt, &auditor, 1, iters));
    });
    report(&rt, "buffered_jsonl", auditor, Some(&path));
    let _ = std::fs::remove_file(&path);

    for producers in [1_u64, 64] {
        let path = dir.path().join(format!("durable-{producers}.jsonl"));
        let sink = JsonLines::open(&path).expect("open the audit file");
        let auditor = Auditor::builder(Arc::new(sink))
            .durability(Durability::Durable)
            .build()
            .expect("start the auditor");
        group.bench_function(format!("durable_jsonl/{producers}"), |b| {
            b.iter_custom(|iters| run(&rt, &auditor, producers, iters));
        });
        report(
            &rt,
            &format!("durable_jsonl/{producers}"),
            auditor,
            Some(&path),
        );
        let _ = std::fs::remove_file(&path);
    }

    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out: the macros declare an
// undocumented `pub fn`, which the workspace's `missing_docs` lint rejects.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    audit_pipeline(&mut criterion);
    criterion.final_summary();
}
