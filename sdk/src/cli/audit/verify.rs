//! `audit verify`: the hash chain across audit files, and the first record that breaks it.

use std::path::PathBuf;

use serde_json::json;

use crate::audit::{ChainError, verify_chain};
use crate::cli::{Outcome, error_message, print_json};

/// Verifies the hash chain across `files`.
pub(in crate::cli) fn verify(files: &[PathBuf], as_json: bool) -> Result<Outcome, String> {
    match verify_chain(files) {
        Ok(report) => {
            let intact = report.torn_tail.is_none();
            if as_json {
                print_json(&json!({
                    "intact": intact,
                    "records": report.records,
                    "starts_at_genesis": report.starts_at_genesis,
                    "last_hash": report.last_hash,
                    "torn_tail": report.torn_tail.as_ref().map(|(f, l)| json!({"file": f, "line": l})),
                }));
            } else {
                println!("{} records, chain intact", report.records);
                if !report.starts_at_genesis {
                    println!(
                        "note: the first record continues an earlier chain; records before these files were not checked"
                    );
                }
                if let Some((file, line)) = &report.torn_tail {
                    println!(
                        "TORN: {file} line {line} is an incomplete record (a write cut short); it is not part of the verified chain"
                    );
                }
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
                print_json(&json!({ "intact": false, "error": broken.to_string() }));
            } else {
                println!("BROKEN: {broken}");
            }
            Ok(Outcome::Refused)
        }
    }
}
