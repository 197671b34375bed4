//! What the benchmarks share: reading back this run's criterion estimates, to print
//! ratios between cases measured in the same run.

use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::Value;

/// Where criterion writes its estimates, found as criterion finds it: `CRITERION_HOME`,
/// `$CARGO_TARGET_DIR/criterion`, cargo's target directory when cargo runs the bench
/// (criterion asks `cargo metadata`; the binary's own `target/<profile>/deps/` says the
/// same), else `./target/criterion`, relative to where the binary runs.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    if std::env::var_os("CARGO").is_some()
        && let Some(target) = target_of_this_binary()
    {
        return target.join("criterion");
    }
    PathBuf::from("target/criterion")
}

/// The target directory this bench binary was built into (`target/<profile>/deps/<bench>`).
fn target_of_this_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

/// The median of the estimate criterion wrote for `id` (`group/function[/parameter]`)
/// since `since`, in nanoseconds; `None` when this run did not measure it.
pub(crate) fn median(id: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir().join(id).join("new/estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let estimates: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}
