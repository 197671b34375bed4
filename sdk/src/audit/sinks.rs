//! The sinks: a hash-chained JSON Lines file, `tracing`, memory, and fan-out.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::chain::{GENESIS_HASH, line_hash, line_hash_hex};
use super::limits::{self, MAX_RECORD_BYTES};
use super::{AuditError, AuditEvent, AuditSink};

/// Appends events to a file, one JSON object per line, as a hash chain (see
/// [`verify_chain`](super::verify_chain)). The file is created with mode 0600 and only
/// ever appended to; opening an existing file continues its chain. Each event is cut to
/// the size bounds (see [`MAX_FIELD_BYTES`](super::MAX_FIELD_BYTES)) before it is
/// written, so no record is longer than [`MAX_RECORD_BYTES`](super::MAX_RECORD_BYTES),
/// which a restart always reads back.
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
    max_bytes: Option<u64>,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    file: File,
    /// The file's length: where the next record starts, and where a failed write is cut
    /// back to.
    len: u64,
    /// The hash of the last record, in hex: the next record's `prev_hash`.
    last_hash: [u8; 64],
    /// The lines of the batch being written; kept to reuse its allocation.
    buffer: Vec<u8>,
}

/// The longest last record searched for when continuing a chain.
const MAX_TAIL_SCAN: u64 = 1024 * 1024;

// A restart finds the last record when the scan reaches the newline before it: the
// longest record the bounds allow, its newline and the one before it fit. The margin is
// what is left for fields added later.
const _: () = assert!(
    MAX_RECORD_BYTES as u64 + 2 <= MAX_TAIL_SCAN,
    "an audit record could outgrow what a restart reads back: tighten the bounds in audit/limits.rs"
);

impl JsonLines {
    /// Opens (or creates, with mode 0600) an audit file for appending.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the file cannot be opened or read;
    /// [`AuditError::TornTail`] when its last record is incomplete (a crash during a
    /// write): [`repair_torn_tail`](super::repair_torn_tail) (`rmcp-authz audit repair`)
    /// cuts it off into a side file, after which the file opens and continues its chain.
    pub fn open(path: impl AsRef<Path>) -> Result<JsonLines, AuditError> {
        let path = path.as_ref().to_path_buf();
        let mut file = open_append(&path)?;
        let last_hash = last_record_hash(&mut file, &path)?;
        let len = file
            .metadata()
            .map_err(|source| io_error(&path, source))?
            .len();
        let last_hash = hex_array(&last_hash).ok_or_else(|| {
            io_error(
                &path,
                std::io::Error::other("the last record's hash is not SHA-256 hex"),
            )
        })?;
        Ok(JsonLines {
            path,
            max_bytes: None,
            state: Mutex::new(FileState {
                file,
                len,
                last_hash,
                buffer: Vec::new(),
            }),
        })
    }

    /// Rotates the file when a write would take it past `max_bytes`: the file is synced
    /// and renamed to `<path>.<UTC time>` (names that sort oldest first), and a new file is
    /// started at `path` whose first record continues the chain. A batch larger than
    /// `max_bytes` goes whole into a fresh file. Rotated files are never deleted here.
    ///
    /// The chain runs across the files: verify them together, oldest first, with the file
    /// at `path` last. Once older files are shipped and deleted, the first file left
    /// continues a chain that starts elsewhere: verify it with
    /// [`VerifyOptions::rotated`](super::VerifyOptions#structfield.rotated) (`audit verify
    /// --rotated`), since a strict [`verify_chain`](super::verify_chain) takes a first record
    /// that does not start a chain for deleted records.
    #[must_use]
    pub fn rotate_at(mut self, max_bytes: u64) -> JsonLines {
        self.max_bytes = Some(max_bytes.max(1));
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io_error(&self, source: std::io::Error) -> AuditError {
        io_error(&self.path, source)
    }

    /// Syncs and renames the current file, and opens a new one at `path`.
    fn rotate(&self, state: &mut FileState) -> Result<(), AuditError> {
        state.file.sync_all().map_err(|e| self.io_error(e))?;
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now())
            .to_string()
            .replace(':', "-");
        let mut rotated = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1;
        while rotated.exists() {
            rotated = PathBuf::from(format!("{}.{stamp}.{n}", self.path.display()));
            n += 1;
        }
        std::fs::rename(&self.path, &rotated).map_err(|e| self.io_error(e))?;
        let file = open_append(&self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The renames survive a crash only once the directory is synced.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(dir, e))?;
        }
        state.file = file;
        state.len = 0;
        Ok(())
    }
}

/// A 64-character hex hash as an array.
fn hex_array(hash: &str) -> Option<[u8; 64]> {
    hash.as_bytes().try_into().ok()
}

/// The batch buffer is kept between writes up to this capacity (a few default batches).
const KEEP_BUFFER: usize = 4 << 20;

/// The bytes that end a record once its `prev_hash` is spliced in: the serialized event
/// ends with `}`, which becomes `,"prev_hash":"<hex>"}`, exactly as `serde_json` writes
/// the field (it is the struct's last field, and hex needs no escaping).
const PREV_HASH_KEY: &[u8] = b",\"prev_hash\":\"";

/// Appends `event` as one JSON line carrying `prev_hash`, and returns the new line's hash.
/// Byte for byte what `serde_json::to_vec` writes for the event cut to its bounds (see
/// `limits`) with `prev_hash` set, but, for an event within them, without cloning it or
/// allocating.
pub(crate) fn append_record(
    buffer: &mut Vec<u8>,
    event: &AuditEvent,
    prev_hash: &[u8; 64],
) -> Result<[u8; 64], AuditError> {
    let start = buffer.len();
    let serialize = |buffer: &mut Vec<u8>, event: &AuditEvent| {
        super::json::write_event(buffer, event).map_err(|e| AuditError::Serialize(e.to_string()))
    };
    let result = if event.prev_hash.is_none() && limits::within_bounds(event) {
        serialize(buffer, event)
    } else {
        // A caller's own prev_hash is replaced, as the chain requires; an event written
        // here directly, not through an `Auditor`, is cut to the bounds here.
        let mut event = event.clone();
        event.prev_hash = None;
        limits::bound(&mut event);
        serialize(buffer, &event)
    };
    if let Err(e) = result {
        buffer.truncate(start);
        return Err(e);
    }
    // With `prev_hash` and its quotes, the record must stay readable by a restart. The
    // bounds guarantee it; this only guards against a mistake in them.
    if buffer.len() - start + PREV_HASH_KEY.len() + 64 + 1 > MAX_RECORD_BYTES {
        buffer.truncate(start);
        return Err(AuditError::Serialize(format!(
            "an audit record would be longer than {MAX_RECORD_BYTES} bytes"
        )));
    }
    if buffer.pop() != Some(b'}') {
        buffer.truncate(start);
        return Err(AuditError::Serialize(
            "an event is not a JSON object".to_owned(),
        ));
    }
    buffer.extend_from_slice(PREV_HASH_KEY);
    buffer.extend_from_slice(prev_hash);
    buffer.extend_from_slice(b"\"}");
    let hash = line_hash_hex(&buffer[start..]);
    buffer.push(b'\n');
    Ok(hash)
}

fn io_error(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Opens (or creates, mode 0600) `path` for appending and reading.
fn open_append(path: &Path) -> Result<File, AuditError> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| io_error(path, e))
}

/// The hash of the last complete line of `file` ([`GENESIS_HASH`] when empty).
fn last_record_hash(file: &mut File, path: &Path) -> Result<String, AuditError> {
    let io = |source| io_error(path, source);
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
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut buffer = std::mem::take(&mut state.buffer);
        buffer.clear();
        let result = self.write_lines(state, &mut buffer, events);
        if buffer.capacity() <= KEEP_BUFFER {
            state.buffer = buffer;
        }
        result
    }

    fn flush(&self, durable: bool) -> Result<(), AuditError> {
        let state = self.lock();
        if durable {
            state.file.sync_data().map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }
}

impl JsonLines {
    /// Serializes `events` into `buffer` as chained lines and appends them with one write.
    fn write_lines(
        &self,
        state: &mut FileState,
        buffer: &mut Vec<u8>,
        events: &[AuditEvent],
    ) -> Result<(), AuditError> {
        let mut last_hash = state.last_hash;
        for event in events {
            last_hash = append_record(buffer, event, &last_hash)?;
        }
        let size = buffer.len() as u64;
        if self
            .max_bytes
            .is_some_and(|max| state.len > 0 && state.len + size > max)
        {
            self.rotate(state)?;
        }
        // One write for the batch; the chain only advances once it is written. A write
        // that fails part-way (a full disk) is cut back, so no partial record stays to
        // break the chain for the records after it.
        if let Err(e) = state.file.write_all(buffer) {
            let len = state.len;
            if let Err(cut) = state.file.set_len(len) {
                tracing::error!(target: "rmcp_authz::audit", error = %cut, "a failed audit write could not be cut back");
            }
            return Err(self.io_error(e));
        }
        state.len += size;
        state.last_hash = last_hash;
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

    fn commit(&self, events: &[AuditEvent], durable: bool) -> Result<(), AuditError> {
        let results: Vec<_> = self
            .sinks
            .iter()
            .map(|s| s.commit(events, durable))
            .collect();
        results.into_iter().collect()
    }
}
