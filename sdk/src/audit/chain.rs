//! The hash chain of audit files, and its verification.
//!
//! Each line of a JSON Lines audit file is one event whose `prev_hash` is the SHA-256 (hex)
//! of the previous line's bytes; the first record of a new chain carries
//! [`GENESIS_HASH`]. Editing a record changes its hash and breaks the next link; deleting
//! or reordering records breaks a link too. Files are verified in the order given (oldest
//! first), the chain running on from one file into the next.

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

/// What a verification found, when the chain is intact.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainReport {
    /// Complete records checked.
    pub records: usize,
    /// Whether the first record starts a chain ([`GENESIS_HASH`]); when not, records before
    /// the first file given are not part of this check (an older, rotated file).
    pub starts_at_genesis: bool,
    /// The hash of the last complete record: the `prev_hash` the next record must carry.
    pub last_hash: String,
    /// A last line without its newline (a write cut short by a crash): file and line
    /// number. It is not counted as a record and is never taken as valid.
    pub torn_tail: Option<(String, usize)>,
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
}

/// Verifies the chain across `paths`, in order.
///
/// # Errors
/// The first [`ChainError`]: the first broken or malformed record.
pub fn verify_chain<P: AsRef<Path>>(paths: &[P]) -> Result<ChainReport, ChainError> {
    let mut previous: Option<String> = None;
    let mut starts_at_genesis = true;
    let mut records = 0;
    let mut torn_tail = None;
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        if let Some((torn_file, line)) = torn_tail.take() {
            return Err(ChainError::TornInside {
                path: torn_file,
                line,
            });
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|source| ChainError::Io {
                path: name.clone(),
                source,
            })?;
        let complete = bytes.ends_with(b"\n");
        let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        // `split` yields a last empty piece after a final newline, or the torn line.
        let last = lines.pop().unwrap_or_default();
        if !complete && !last.is_empty() {
            torn_tail = Some((name.clone(), lines.len() + 1));
        }
        for (i, line) in lines.iter().enumerate() {
            let number = i + 1;
            let malformed = |reason: &str| ChainError::Malformed {
                path: name.clone(),
                line: number,
                reason: reason.to_owned(),
            };
            let record: Value = serde_json::from_slice(line).map_err(|_| malformed("not JSON"))?;
            let found = record
                .get("prev_hash")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("no prev_hash"))?;
            match &previous {
                Some(expected) if expected != found => {
                    return Err(ChainError::Broken {
                        path: name.clone(),
                        line: number,
                        expected: expected.clone(),
                        found: found.to_owned(),
                    });
                }
                Some(_) => {}
                None => starts_at_genesis = found == GENESIS_HASH,
            }
            previous = Some(line_hash(line));
            records += 1;
        }
    }
    Ok(ChainReport {
        records,
        starts_at_genesis,
        last_hash: previous.unwrap_or_else(|| GENESIS_HASH.to_owned()),
        torn_tail,
    })
}
