//! Shared helpers for the end-to-end and corpus tests of `rmcp-authz`.

pub mod everything;
pub mod http;
pub mod notes;
pub mod postgres;
pub mod provider;
pub mod proxy;
pub mod server;

use std::path::PathBuf;

/// The workspace's root directory (where `target/interop/`, set up by
/// `scripts/setup-interop.sh`, lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The directory holding test fixtures (`tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Reads a fixture file as text, failing the test with the path when it is missing.
pub fn read_fixture(relative: &str) -> String {
    let path = fixtures_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// The Python of the interop virtual environment (`target/interop/venv`, with PyJWT,
/// `cryptography` and the MCP Python SDK), failing the test with what to run when it is
/// missing.
pub fn interop_python() -> PathBuf {
    let python = repo_root().join("target/interop/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-interop.sh (scripts/test.sh runs it before the tests)",
        python.display()
    );
    python
}

/// What the interop script `tests/clients/<script>` prints, run with `args` in the interop
/// Python ([`interop_python`]): the JSON corpus it makes. Fails the test with the script's
/// stderr when it fails.
pub fn python_corpus(script: &str, args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new(interop_python())
        .arg(repo_root().join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the corpus is JSON")
}
