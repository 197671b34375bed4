//! `audit repair`: a torn last record cut off an audit file into a side file, so that the
//! server can open the file again and its chain continues.

use std::path::Path;

use serde_json::json;

use crate::audit::repair_torn_tail;
use crate::cli::{Outcome, error_message, print_json};

/// Repairs `file`, whose last record is torn; a file that is not torn, or whose records
/// before the cut do not verify, is refused (exit 2).
pub(in crate::cli) fn repair(file: &Path, as_json: bool) -> Result<Outcome, String> {
    let report = repair_torn_tail(file).map_err(|e| error_message(&e))?;
    let path = report.path.display().to_string();
    let side_file = report.side_file.display().to_string();
    if as_json {
        print_json(&json!({
            "repaired": true,
            "file": path,
            "side_file": side_file,
            "torn_line": report.torn_line,
            "torn_bytes": report.torn_bytes,
            "kept_bytes": report.kept_bytes,
            "records": report.records,
            "starts_at_genesis": report.starts_at_genesis,
            "last_hash": report.last_hash,
        }));
    } else {
        println!(
            "repaired {path}: line {} was incomplete; its {} bytes moved to {side_file}",
            report.torn_line, report.torn_bytes
        );
        println!(
            "{path} now ends with its last complete record: {} records ({} bytes), chain intact; the next record continues from {}",
            report.records, report.kept_bytes, report.last_hash
        );
        if report.records == 0 {
            println!("note: no record was left: the next record starts a new chain");
        }
    }
    Ok(Outcome::Ok)
}
