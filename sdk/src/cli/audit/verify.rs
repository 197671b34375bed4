//! `audit verify`: the hash chain across audit files, the first record that breaks it, and
//! (with `--anchor`) whether a record saved earlier is still its part.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::audit::{ChainError, ChainReport, VerifyOptions, verify_chain_with};
use crate::cli::{Outcome, error_message, print_json};

/// The anchor of `--anchor HASH` or `--anchor-file PATH` (its content, whitespace trimmed),
/// in lowercase; `None` when neither was given.
pub(in crate::cli) fn read_anchor(
    hash: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, String> {
    let (text, source) = match (hash, file) {
        (Some(hash), _) => (hash, "--anchor".to_owned()),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the anchor file {}: {e}", file.display()))?;
            (text, format!("the anchor file {}", file.display()))
        }
        (None, None) => return Ok(None),
    };
    let hash = text.trim();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{source}: {:?} is not a record hash (64 hex digits, as `audit verify --json` prints in last_hash)",
            crate::error::excerpt(hash)
        ));
    }
    Ok(Some(hash.to_ascii_lowercase()))
}

/// Verifies the hash chain across `files`, against `anchor` when given; with `rotated`, the
/// first record may continue an earlier chain.
pub(in crate::cli) fn verify(
    files: &[PathBuf],
    anchor: Option<String>,
    rotated: bool,
    as_json: bool,
) -> Result<Outcome, String> {
    let mut options = VerifyOptions::default().rotated(rotated);
    options.anchor = anchor;
    match verify_chain_with(files, &options) {
        Ok(report) => {
            let intact = report.torn_tail.is_none();
            if as_json {
                print_json(&intact_json(&report, intact));
            } else {
                print_intact(&report);
            }
            Ok(if intact {
                Outcome::Ok
            } else {
                Outcome::Refused
            })
        }
        Err(error @ ChainError::Io { .. }) => Err(error_message(&error)),
        Err(broken) => {
            if as_json {
                print_json(&broken_json(&broken));
            } else {
                println!("BROKEN: {broken}");
            }
            Ok(Outcome::Refused)
        }
    }
}

/// The `--json` answer for a chain whose links hold (`intact` unless its last record is torn).
fn intact_json(report: &ChainReport, intact: bool) -> Value {
    let mut answer = json!({
        "intact": intact,
        "records": report.records,
        "starts_at_genesis": report.starts_at_genesis,
        "last_hash": report.last_hash,
        "torn_tail": report.torn_tail.as_ref().map(|(f, l)| json!({"file": f, "line": l})),
    });
    if let Some(anchor) = &report.anchor {
        let (file, line) = anchor.at.clone().unzip();
        answer["anchor"] = json!({
            "hash": anchor.hash,
            "found": true,
            "file": file,
            "line": line,
            "records_after": anchor.records_after,
        });
    }
    answer
}

/// Prints what a chain whose links hold is, for people.
fn print_intact(report: &ChainReport) {
    println!("{} records, chain intact", report.records);
    if !report.starts_at_genesis {
        println!(
            "note: the first record continues an earlier chain (--rotated); records before these files were not checked"
        );
    }
    if let Some(anchor) = &report.anchor {
        let at = match &anchor.at {
            Some((file, line)) => format!("{file} line {line}"),
            None => "the start of the chain".to_owned(),
        };
        println!(
            "anchor found: {at}; {} records appended since",
            anchor.records_after
        );
    }
    if let Some((file, line)) = &report.torn_tail {
        println!(
            "TORN: {file} line {line} is an incomplete record (a write cut short); it is not part of the verified chain; `rmcp-authz audit repair {file}` cuts it off into a side file"
        );
    }
}

/// The `--json` answer for a broken chain: the message, a kind for scripts, and where.
fn broken_json(broken: &ChainError) -> Value {
    let mut answer = json!({ "intact": false, "error": broken.to_string() });
    let (kind, path, line) = match broken {
        ChainError::Broken {
            path,
            line,
            expected,
            found,
        } => {
            answer["expected"] = json!(expected);
            answer["found"] = json!(found);
            ("broken", path, *line)
        }
        ChainError::Malformed { path, line, reason } => {
            answer["reason"] = json!(reason);
            ("malformed", path, *line)
        }
        ChainError::TornInside { path, line } => ("torn_inside", path, *line),
        ChainError::MissingStart { path, line, found } => {
            answer["found"] = json!(found);
            ("missing_start", path, *line)
        }
        ChainError::AnchorMissing { anchor, path, line } => {
            answer["anchor"] = json!({
                "hash": anchor,
                "found": false,
                "file": null,
                "line": null,
            });
            ("anchor_missing", path, *line)
        }
        // Never here: a file that cannot be read stops the command.
        ChainError::Io { path, .. } => ("io", path, 0),
    };
    answer["kind"] = json!(kind);
    answer["file"] = json!(path);
    answer["line"] = json!(line);
    answer
}
