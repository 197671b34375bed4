//! The sinks: a hash-chained JSON Lines file, `tracing`, memory, and fan-out.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::chain::{GENESIS_HASH, line_hash};
use super::{AuditError, AuditEvent, AuditSink};

/// Appends events to a file, one JSON object per line, as a hash chain (see
/// [`verify_chain`](super::verify_chain)). The file is created with mode 0600 and only
/// ever appended to; opening an existing file continues its chain.
///
/// ```
/// use rmcp_authz::audit::{AuditEvent, AuditSink, DecisionKind, EventKind, JsonLines, Outcome, verify_chain};
/// let path = std::env::temp_dir().join(format!("rmcp-authz-doc-{}.jsonl", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let sink = JsonLines::open(&path)?;
/// sink.write(&[AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success)])?;
/// sink.flush(true)?;
/// assert_eq!(verify_chain(&[&path])?.records, 1);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct JsonLines {
    path: PathBuf,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    file: File,
    last_hash: String,
}

/// The longest last record searched for when continuing a chain.
const MAX_TAIL_SCAN: u64 = 1024 * 1024;

impl JsonLines {
    /// Opens (or creates, with mode 0600) an audit file for appending.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the file cannot be opened or read;
    /// [`AuditError::TornTail`] when its last record is incomplete.
    pub fn open(path: impl AsRef<Path>) -> Result<JsonLines, AuditError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        let last_hash = last_record_hash(&mut file, &path)?;
        Ok(JsonLines {
            path,
            state: Mutex::new(FileState { file, last_hash }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io_error(&self, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

/// The hash of the last complete line of `file` ([`GENESIS_HASH`] when empty).
fn last_record_hash(file: &mut File, path: &Path) -> Result<String, AuditError> {
    let io = |source| AuditError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(GENESIS_HASH.to_owned());
    }
    let start = len.saturating_sub(MAX_TAIL_SCAN);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io)?;
    if !tail.ends_with(b"\n") {
        return Err(AuditError::TornTail {
            path: path.display().to_string(),
        });
    }
    let body = &tail[..tail.len() - 1];
    match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => Ok(line_hash(&body[i + 1..])),
        None if start == 0 => Ok(line_hash(body)),
        None => Err(io(std::io::Error::other(
            "the last record is longer than 1 MiB; cannot continue the chain",
        ))),
    }
}

impl AuditSink for JsonLines {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let mut state = self.lock();
        let mut buffer = Vec::new();
        let mut last_hash = state.last_hash.clone();
        for event in events {
            let mut event = event.clone();
            event.prev_hash = Some(last_hash);
            let line =
                serde_json::to_vec(&event).map_err(|e| AuditError::Serialize(e.to_string()))?;
            last_hash = line_hash(&line);
            buffer.extend_from_slice(&line);
            buffer.push(b'\n');
        }
        // One write for the batch; the chain only advances once it is written.
        state
            .file
            .write_all(&buffer)
            .map_err(|e| self.io_error(e))?;
        state.last_hash = last_hash;
        Ok(())
    }

    fn flush(&self, durable: bool) -> Result<(), AuditError> {
        let state = self.lock();
        if durable {
            state.file.sync_data().map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }
}

/// Emits each event as a `tracing` event on target `rmcp_authz::audit`, with the fields
/// an operator filters on, and the whole record as JSON in `event`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        for e in events {
            let json =
                serde_json::to_string(e).map_err(|err| AuditError::Serialize(err.to_string()))?;
            tracing::info!(
                target: "rmcp_authz::audit",
                id = %e.id,
                kind = ?e.kind,
                decision = ?e.decision,
                outcome = ?e.outcome,
                agent = e.agent.as_deref().unwrap_or(""),
                subject = e.subject.as_deref().unwrap_or(""),
                target_name = e.target.as_deref().unwrap_or(""),
                reason_code = e.reason_code.as_deref().unwrap_or(""),
                event = %json,
                "audit"
            );
        }
        Ok(())
    }
}

/// Keeps events in memory, for tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl AuditSink for MemorySink {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(events);
        Ok(())
    }
}

/// Writes every event to each of several sinks; fails when any of them fails (after
/// trying them all).
#[derive(Debug, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn AuditSink>>,
}

impl FanOut {
    /// A fan-out over `sinks`.
    pub fn new(sinks: Vec<Arc<dyn AuditSink>>) -> Self {
        FanOut { sinks }
    }
}

impl AuditSink for FanOut {
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let results: Vec<_> = self.sinks.iter().map(|s| s.write(events)).collect();
        results.into_iter().collect()
    }

    fn flush(&self, durable: bool) -> Result<(), AuditError> {
        let results: Vec<_> = self.sinks.iter().map(|s| s.flush(durable)).collect();
        results.into_iter().collect()
    }
}
