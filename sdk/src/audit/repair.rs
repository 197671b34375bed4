//! Repairing a torn audit file: its incomplete last record moved into a side file, and the
//! file cut back to its last complete record, so that the chain continues across the cut.
//!
//! A crash during a write can leave the last line of a JSON Lines audit file without its
//! newline. [`JsonLines::open`](super::JsonLines::open) refuses such a file
//! ([`AuditError::TornTail`](super::AuditError::TornTail)), since appending after it would
//! bury a broken record inside the chain. Starting a new file instead would start a new chain
//! at [`GENESIS_HASH`](super::GENESIS_HASH), and the old and new files would never verify as
//! one. [`repair_torn_tail`] keeps the chain: the complete records stay as they are, so the
//! next record links to the last of them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use super::chain::{ChainError, VerifyOptions, verify_bytes};

/// What [`repair_torn_tail`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The repaired file.
    pub path: PathBuf,
    /// The side file now holding the torn bytes, exactly: `<path>.torn-<UTC time>`.
    pub side_file: PathBuf,
    /// The 1-based line the torn record was on.
    pub torn_line: usize,
    /// How many bytes were moved into the side file.
    pub torn_bytes: u64,
    /// The file's length now: the bytes of its complete records.
    pub kept_bytes: u64,
    /// The complete records the file keeps (all verified).
    pub records: usize,
    /// Whether its first record starts a chain; when not, it continues an older, rotated
    /// file (checked only by verifying that file too).
    pub starts_at_genesis: bool,
    /// The hash of its last complete record: the `prev_hash` the next record carries.
    pub last_hash: String,
}

/// Why [`repair_torn_tail`] did not repair a file. The file is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// The file, or its side file, could not be read, written or synced.
    #[error("cannot repair {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file ends with a complete record (or is empty): there is nothing to repair.
    #[error("{path} is not torn: it ends with a complete record, or is empty; nothing to repair")]
    NotTorn {
        /// The file.
        path: String,
    },
    /// The records before the torn one do not verify, so cutting the file there would not
    /// leave a chain to continue; the error names the line.
    #[error("cannot repair {path}: the records before its torn last line do not verify: {source}")]
    Chain {
        /// The file.
        path: String,
        /// The first record that does not verify.
        #[source]
        source: ChainError,
    },
    /// The file changed while it was being repaired: something is writing to it.
    #[error(
        "cannot repair {path}: it changed while being repaired; stop whatever writes to it and try again"
    )]
    Changed {
        /// The file.
        path: String,
    },
}

/// Repairs an audit file whose last record is torn (a line without its newline, left by a
/// crash during a write): moves the torn bytes into a new side file `<path>.torn-<UTC time>`
/// (mode 0600, synced, so nothing is lost), then cuts `path` back to its last complete
/// record (synced). Afterwards [`JsonLines::open`](super::JsonLines::open) continues the
/// chain from that record, and the file verifies, alone and with the files before and
/// after it.
///
/// The records kept are verified first, as the active file of a rotated log (their first
/// record may continue an older file). Run it while nothing writes to the file: a server
/// refuses to open a torn file, so a torn file normally has no writer; a file that changes
/// during the repair is left as it is ([`RepairError::Changed`]). When the torn record was
/// the file's only line, the file is left empty and its next record starts a new chain.
///
/// ```
/// use rmcp_authz::audit::{AuditEvent, AuditSink, DecisionKind, EventKind, JsonLines, Outcome, repair_torn_tail, verify_chain};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("audit.jsonl");
/// let event = AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success);
/// JsonLines::open(&path)?.write(&[event.clone()])?;
/// // A crash cut the next record short.
/// let mut bytes = std::fs::read(&path)?;
/// bytes.extend_from_slice(br#"{"schema_version":1,"id":"#);
/// std::fs::write(&path, &bytes)?;
/// assert!(JsonLines::open(&path).is_err());
///
/// let report = repair_torn_tail(&path)?;
/// assert_eq!((report.records, report.torn_line), (1, 2));
/// assert_eq!(std::fs::read(&report.side_file)?, br#"{"schema_version":1,"id":"#);
/// JsonLines::open(&path)?.write(&[event])?;
/// assert_eq!(verify_chain(&[&path])?.records, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`RepairError::NotTorn`] when the file ends with a complete record or is empty;
/// [`RepairError::Chain`] when the records before the torn line do not verify (naming the
/// first that does not); [`RepairError::Changed`] when the file changed meanwhile;
/// [`RepairError::Io`] when a file cannot be read, written or synced. The file is unchanged
/// in every case.
pub fn repair_torn_tail(path: impl AsRef<Path>) -> Result<RepairReport, RepairError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io = |source| io_error(path, source);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Err(RepairError::NotTorn { path: name });
    }
    // The cut: just after the last newline, where the torn line starts.
    let cut = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (kept, torn) = bytes.split_at(cut);
    let report =
        verify_bytes(&name, kept, &VerifyOptions::default().rotated(true)).map_err(|source| {
            RepairError::Chain {
                path: name.clone(),
                source,
            }
        })?;
    let side_file = write_side_file(path, torn)?;
    // Only what was read is cut: a file that grew meanwhile has a writer.
    let len = file.metadata().map_err(io)?.len();
    if len != bytes.len() as u64 {
        // The side file holds a copy of bytes the file still has: nothing to keep.
        let _ = std::fs::remove_file(&side_file);
        return Err(RepairError::Changed { path: name });
    }
    file.set_len(cut as u64).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(RepairReport {
        path: path.to_path_buf(),
        side_file,
        torn_line: report.records + 1,
        torn_bytes: torn.len() as u64,
        kept_bytes: cut as u64,
        records: report.records,
        starts_at_genesis: report.starts_at_genesis,
        last_hash: report.last_hash,
    })
}

fn io_error(path: &Path, source: io::Error) -> RepairError {
    RepairError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `torn` to a new file `<path>.torn-<UTC time>` (mode 0600), synced, with its
/// directory entry synced, and returns its path.
fn write_side_file(path: &Path, torn: &[u8]) -> Result<PathBuf, RepairError> {
    let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-");
    let base = format!("{}.torn-{stamp}", path.display());
    let mut n = 0;
    let (side_file, mut file) = loop {
        let candidate = if n == 0 {
            PathBuf::from(&base)
        } else {
            PathBuf::from(format!("{base}.{n}"))
        };
        match create_new(&candidate) {
            Ok(file) => break (candidate, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(io_error(&candidate, e)),
        }
    };
    let written = file.write_all(torn).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&side_file);
        return Err(io_error(&side_file, e));
    }
    // The new file survives a crash only once its directory is synced.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))?;
    Ok(side_file)
}

/// Creates `path`, which must not exist, with mode 0600.
fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}
