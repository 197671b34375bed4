//! The hash chain of audit files, and its verification.
//!
//! Each line of a JSON Lines audit file is one event whose `prev_hash` is the SHA-256 (hex)
//! of the previous line's bytes; the first record of a new chain carries
//! [`GENESIS_HASH`]. Editing a record changes its hash and breaks the next link; deleting
//! or reordering records breaks a link too. Files are verified in the order given (oldest
//! first), the chain running on from one file into the next.
//!
//! Two cuts leave every remaining link intact, and [`VerifyOptions`] catches both: records
//! deleted from the start (the first record then does not carry [`GENESIS_HASH`], an error
//! unless the caller says older files were [rotated](VerifyOptions::rotated) away), and
//! records dropped or rewritten at the end (caught against an
//! [anchor](VerifyOptions::anchor): a record hash saved earlier, which must still be there).

use std::io::Read;
use std::path::Path;

use aws_lc_rs::digest::{SHA256, digest};
use serde_json::Value;

/// The `prev_hash` of the first record of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The SHA-256 of `line` (without its newline), in lowercase hex.
pub(crate) fn line_hash(line: &[u8]) -> String {
    hex::encode(digest(&SHA256, line))
}

/// [`line_hash`] into a fixed array (ASCII lowercase hex), without allocating: the file
/// sink computes one per record.
pub(crate) fn line_hash_hex(line: &[u8]) -> [u8; 64] {
    let mut out = [0_u8; 64];
    // A SHA-256 digest is 32 bytes: exactly the 64 digits `out` holds.
    let _ = hex::encode_to_slice(digest(&SHA256, line), &mut out);
    out
}

/// What [`verify_chain_with`] checks besides the links between records.
///
/// The default is the strict check [`verify_chain`] makes: the first record must start a
/// chain, and no anchor is checked.
///
/// ```
/// use rmcp_authz::audit::VerifyOptions;
/// let saved = "47ab9c1f47ab9c1f47ab9c1f47ab9c1f47ab9c1f47ab9c1f47ab9c1f47ab9c1f";
/// let options = VerifyOptions::default().anchor(saved).rotated(true);
/// assert_eq!(options.anchor.as_deref(), Some(saved));
/// assert!(options.rotated);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// A record hash saved earlier (a `last_hash` of [`ChainReport`], kept where the server
    /// cannot write): the chain holds only if one of its complete records still hashes to
    /// it, so dropping or rewriting the newest records is caught. Records appended since
    /// are fine. [`GENESIS_HASH`] (saved from an empty log) is found when the chain starts
    /// at genesis. Compared without regard to case. Default: none.
    pub anchor: Option<String>,
    /// Whether the first record may continue an earlier chain, because older files were
    /// rotated away (the active file of a rotated log, verified alone). When not, a first
    /// record that does not carry [`GENESIS_HASH`] is [`ChainError::MissingStart`]: its
    /// earlier records were deleted. Default: `false`.
    pub rotated: bool,
}

impl VerifyOptions {
    /// Checks the chain against `hash`; see [`VerifyOptions::anchor`](#structfield.anchor).
    #[must_use]
    pub fn anchor(mut self, hash: impl Into<String>) -> VerifyOptions {
        self.anchor = Some(hash.into());
        self
    }

    /// Lets the first record continue an earlier chain; see
    /// [`VerifyOptions::rotated`](#structfield.rotated).
    #[must_use]
    pub fn rotated(mut self, rotated: bool) -> VerifyOptions {
        self.rotated = rotated;
        self
    }
}

/// What a verification found, when the chain is intact.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainReport {
    /// Complete records checked.
    pub records: usize,
    /// Whether the first record starts a chain ([`GENESIS_HASH`]); when not (allowed only
    /// with [`VerifyOptions::rotated`](VerifyOptions#structfield.rotated)), records before
    /// the first file given are not part of this check (an older, rotated file).
    pub starts_at_genesis: bool,
    /// The hash of the last complete record: the `prev_hash` the next record must carry.
    pub last_hash: String,
    /// A last line without its newline (a write cut short by a crash): file and line
    /// number. It is not counted as a record and is never taken as valid.
    pub torn_tail: Option<(String, usize)>,
    /// Where the [anchor](VerifyOptions#structfield.anchor) was found, when one was given.
    pub anchor: Option<AnchorMatch>,
}

/// The record an anchor names, found in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnchorMatch {
    /// The anchor, as given.
    pub hash: String,
    /// The file and 1-based line of the record that hashes to it; `None` for a
    /// [`GENESIS_HASH`] anchor, which names the start of the chain rather than a record.
    pub at: Option<(String, usize)>,
    /// Complete records after it: appended since the anchor was saved.
    pub records_after: usize,
}

/// Where and why a chain is broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record is not a JSON object with a `prev_hash` string.
    #[error("{path} line {line}: not an audit record ({reason})")]
    Malformed {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record's `prev_hash` is not the hash of the record before it: that record, or
    /// this one, was edited, or records between them were removed or reordered.
    #[error(
        "{path} line {line}: the chain is broken: prev_hash is {found}, the previous record hashes to {expected}"
    )]
    Broken {
        /// The file.
        path: String,
        /// The 1-based line of the first record whose link does not hold.
        line: usize,
        /// The hash the record should carry.
        expected: String,
        /// The hash it carries.
        found: String,
    },
    /// A torn (incomplete) line appears before the end of the last file.
    #[error("{path} line {line}: an incomplete record in the middle of the chain")]
    TornInside {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
    },
    /// The first record does not start a chain, and the caller did not say that older
    /// files were rotated away ([`VerifyOptions::rotated`](VerifyOptions#structfield.rotated)).
    #[error(
        "{path} line {line}: the first record continues an earlier chain (prev_hash {found}): its earlier records were deleted, or, if older files were rotated away, verify it as rotated (`--rotated`)"
    )]
    MissingStart {
        /// The file.
        path: String,
        /// The 1-based line of the first record.
        line: usize,
        /// The `prev_hash` it carries instead of [`GENESIS_HASH`].
        found: String,
    },
    /// No complete record hashes to the [anchor](VerifyOptions#structfield.anchor): the
    /// anchored record is gone, so the newest records were dropped or rewritten (or the
    /// files given do not reach the point where the anchor was saved).
    #[error("{}", anchor_missing(anchor, path, *line))]
    AnchorMissing {
        /// The anchor, as given.
        anchor: String,
        /// The file of the chain's last complete record (the last file given, when there
        /// is no record).
        path: String,
        /// The 1-based line of the chain's last complete record: where it now ends (0 when
        /// there is no record).
        line: usize,
    },
}

/// The message of [`ChainError::AnchorMissing`].
fn anchor_missing(anchor: &str, path: &str, line: usize) -> String {
    let end = if line == 0 {
        format!("{path}: no record")
    } else {
        format!("{path} line {line}: the chain ends here, and no record")
    };
    format!(
        "{end} hashes to the anchor {anchor}: the anchored record is gone, so the newest records were dropped or rewritten"
    )
}

/// Verifies the chain across `paths`, in order, strictly: the first record must start a
/// chain ([`GENESIS_HASH`]). The same as [`verify_chain_with`] with the default
/// [`VerifyOptions`].
///
/// # Errors
/// The first [`ChainError`]: the first broken or malformed record, or a first record that
/// continues an earlier chain ([`ChainError::MissingStart`]).
pub fn verify_chain<P: AsRef<Path>>(paths: &[P]) -> Result<ChainReport, ChainError> {
    verify_chain_with(paths, &VerifyOptions::default())
}

/// Verifies the chain across `paths`, in order, with `options`: whether the first record
/// may continue an earlier chain, and an anchor that must still be in it.
///
/// ```
/// use rmcp_authz::audit::{AuditEvent, AuditSink, ChainError, DecisionKind, EventKind, JsonLines, Outcome, VerifyOptions, verify_chain_with};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("audit.jsonl");
/// let sink = JsonLines::open(&path)?;
/// let event = AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success);
/// sink.write(&[event.clone(), event.clone()])?;
/// // The operator keeps the last hash somewhere the server cannot write.
/// let saved = verify_chain_with(&[&path], &VerifyOptions::default())?.last_hash;
/// sink.write(&[event])?;
/// let anchored = VerifyOptions::default().anchor(saved);
/// let report = verify_chain_with(&[&path], &anchored)?;
/// assert_eq!(report.anchor.map(|a| a.records_after), Some(1));
/// // The newest two records dropped: the anchored one is gone.
/// let text = std::fs::read_to_string(&path)?;
/// std::fs::write(&path, format!("{}\n", text.lines().next().unwrap()))?;
/// assert!(matches!(verify_chain_with(&[&path], &anchored), Err(ChainError::AnchorMissing { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// The first [`ChainError`]: the first broken or malformed record, a first record that
/// continues an earlier chain unless `options.rotated`, or, once the whole chain holds, an
/// anchor no record hashes to.
pub fn verify_chain_with<P: AsRef<Path>>(
    paths: &[P],
    options: &VerifyOptions,
) -> Result<ChainReport, ChainError> {
    let mut scan = Scan::new(options);
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|source| ChainError::Io {
                path: name.clone(),
                source,
            })?;
        scan.file(name, &bytes)?;
    }
    scan.finish()
}

/// Verifies `bytes`, the content of the file `name`, as one chain with `options`.
pub(super) fn verify_bytes(
    name: &str,
    bytes: &[u8],
    options: &VerifyOptions,
) -> Result<ChainReport, ChainError> {
    let mut scan = Scan::new(options);
    scan.file(name.to_owned(), bytes)?;
    scan.finish()
}

/// A verification in progress: the files read so far, in order.
struct Scan<'o> {
    options: &'o VerifyOptions,
    /// The hash of the last record; `None` before the first.
    previous: Option<String>,
    starts_at_genesis: bool,
    records: usize,
    torn_tail: Option<(String, usize)>,
    /// The anchor's record, once found, and the records up to and including it.
    anchor: Option<((String, usize), usize)>,
    /// The last complete record: file and line.
    last_record: Option<(String, usize)>,
    /// The last file read.
    last_file: Option<String>,
}

impl<'o> Scan<'o> {
    fn new(options: &'o VerifyOptions) -> Scan<'o> {
        Scan {
            options,
            previous: None,
            starts_at_genesis: true,
            records: 0,
            torn_tail: None,
            anchor: None,
            last_record: None,
            last_file: None,
        }
    }

    /// Whether `hash` is the anchor's.
    fn is_anchor(&self, hash: &str) -> bool {
        self.options
            .anchor
            .as_deref()
            .is_some_and(|anchor| anchor.eq_ignore_ascii_case(hash))
    }

    /// Checks the records of the next file, `name`, whose content is `bytes`.
    fn file(&mut self, name: String, bytes: &[u8]) -> Result<(), ChainError> {
        if let Some((path, line)) = self.torn_tail.take() {
            return Err(ChainError::TornInside { path, line });
        }
        let complete = bytes.ends_with(b"\n");
        let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        // `split` yields a last empty piece after a final newline, or the torn line.
        let last = lines.pop().unwrap_or_default();
        if !complete && !last.is_empty() {
            self.torn_tail = Some((name.clone(), lines.len() + 1));
        }
        for (i, line) in lines.iter().enumerate() {
            self.record(&name, i + 1, line)?;
        }
        // Every complete line is a record: the last is the file's last record.
        if !lines.is_empty() {
            self.last_record = Some((name.clone(), lines.len()));
        }
        self.last_file = Some(name);
        Ok(())
    }

    /// Checks line `number` of `name`, a complete record, against the one before it.
    fn record(&mut self, name: &str, number: usize, line: &[u8]) -> Result<(), ChainError> {
        let malformed = |reason: &str| ChainError::Malformed {
            path: name.to_owned(),
            line: number,
            reason: reason.to_owned(),
        };
        let record: Value = serde_json::from_slice(line).map_err(|_| malformed("not JSON"))?;
        let found = record
            .get("prev_hash")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no prev_hash"))?;
        match &self.previous {
            Some(expected) if expected != found => {
                return Err(ChainError::Broken {
                    path: name.to_owned(),
                    line: number,
                    expected: expected.clone(),
                    found: found.to_owned(),
                });
            }
            Some(_) => {}
            None if found == GENESIS_HASH => {}
            None if self.options.rotated => self.starts_at_genesis = false,
            None => {
                return Err(ChainError::MissingStart {
                    path: name.to_owned(),
                    line: number,
                    found: found.to_owned(),
                });
            }
        }
        let hash = line_hash(line);
        self.records += 1;
        if self.anchor.is_none() && self.is_anchor(&hash) {
            self.anchor = Some(((name.to_owned(), number), self.records));
        }
        self.previous = Some(hash);
        Ok(())
    }

    /// The report, once every file is read; an anchor not found is an error.
    fn finish(self) -> Result<ChainReport, ChainError> {
        let genesis_anchored = self.starts_at_genesis && self.is_anchor(GENESIS_HASH);
        let anchor = match (&self.options.anchor, self.anchor) {
            (None, _) => None,
            (Some(hash), Some((at, through))) => Some(AnchorMatch {
                hash: hash.clone(),
                at: Some(at),
                records_after: self.records - through,
            }),
            // The start of a chain, saved from an empty log.
            (Some(hash), None) if genesis_anchored => Some(AnchorMatch {
                hash: hash.clone(),
                at: None,
                records_after: self.records,
            }),
            (Some(hash), None) => {
                let (path, line) = self
                    .last_record
                    .or_else(|| self.last_file.map(|file| (file, 0)))
                    .unwrap_or_default();
                return Err(ChainError::AnchorMissing {
                    anchor: hash.clone(),
                    path,
                    line,
                });
            }
        };
        Ok(ChainReport {
            records: self.records,
            starts_at_genesis: self.starts_at_genesis,
            last_hash: self.previous.unwrap_or_else(|| GENESIS_HASH.to_owned()),
            torn_tail: self.torn_tail,
            anchor,
        })
    }
}
