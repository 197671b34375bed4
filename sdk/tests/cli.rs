//! The `rmcp-authz` command-line tool, run as a real process.
//!
//! Each test makes its own directory under the system temp dir holding a JWK Set from a
//! [`DevIssuer`] and a configuration file, runs the built binary
//! (`CARGO_BIN_EXE_rmcp-authz`) and checks its exit code (0 accepted / allowed / clean,
//! 1 refused / denied / policy errors, 2 could not run) and what it prints, as
//! `docs/cli.md` documents them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rmcp_authz::dev::DevIssuer;
use serde_json::Value;

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://mcp.example.com/mcp";

/// The notes server's policy, as in `docs/rmcp-authz.example.toml` (shortened).
const NOTES_POLICY: &str = r#"
[policy]
implies = { "notes:admin" = ["notes:write", "notes:delete"], "notes:write" = ["notes:read"] }

[policy.tools]
list_notes = "notes:read"
write_note = "notes:write"
delete_note = "notes:delete"
purge = { requires = "notes:admin ops:purge", clients = ["admin-console"] }
whoami = ""

[policy.resources]
"notes://index" = ""
"notes://{id}" = "notes:read"

[policy.prompts]
summarize = "notes:read"
"#;

/// The tools of the notes server, for `--tools`.
const NOTES_TOOLS: &str = "list_notes,write_note,delete_note,purge,whoami";

/// A temporary directory with a development issuer's `jwks.json`; removed on drop.
struct Fixture {
    dir: PathBuf,
    issuer: DevIssuer,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rmcp-authz-cli-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = DevIssuer::new(ISSUER).unwrap();
        std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string()).unwrap();
        Fixture { dir, issuer }
    }

    /// Writes `rmcp-authz.toml`: a `[verifier]` trusting the issuer, then `rest`.
    fn config(&self, rest: &str) -> PathBuf {
        self.config_text(&format!(
            "[verifier]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"jwks.json\"\n{rest}"
        ))
    }

    /// Writes `rmcp-authz.toml` with exactly `text`.
    fn config_text(&self, text: &str) -> PathBuf {
        let path = self.dir.join("rmcp-authz.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A token for this server: alice, through the notes-app client, with `scopes`.
    fn token(&self, scopes: &[&str]) -> String {
        self.issuer
            .token(AUDIENCE)
            .subject("alice")
            .client_id("notes-app")
            .scopes(scopes)
            .mint()
            .unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rmcp-authz"));
    cmd.args(args);
    cmd
}

fn finish(cmd: &mut Command, stdin: Option<&str>) -> Run {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("the rmcp-authz binary runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    finish(&mut command(args), None)
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Run {
    finish(&mut command(args), Some(stdin))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

/// The rule of `name` in `policy show --json` output.
fn show_rule<'a>(shown: &'a Value, kind: &str, name: &str) -> &'a Value {
    shown["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name:?} in {shown:#}"))
}

// ---------------------------------------------------------------------------------------
// token inspect
// ---------------------------------------------------------------------------------------

#[test]
fn inspect_good_token_prints_header_claims_and_expiry() {
    let f = Fixture::new("inspect-good");
    let token = f.token(&["notes:read"]);
    let out = run(&["token", "inspect", &token]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("NOT VERIFIED"), "{out:#?}");
    assert!(out.stdout.contains("header:"), "{out:#?}");
    assert!(out.stdout.contains("\"typ\": \"at+jwt\""), "{out:#?}");
    assert!(out.stdout.contains("claims:"), "{out:#?}");
    assert!(out.stdout.contains("\"sub\": \"alice\""), "{out:#?}");
    assert!(out.stdout.contains("\"scope\": \"notes:read\""), "{out:#?}");
    assert!(out.stdout.contains("expires in"), "{out:#?}");
    assert!(out.stdout.contains("problems: none found"), "{out:#?}");
    assert!(out.stderr.is_empty(), "{out:#?}");
}

#[test]
fn inspect_token_typed_jwt_without_aud_lists_both_problems() {
    let f = Fixture::new("inspect-problems");
    let token = f
        .issuer
        .token(AUDIENCE)
        .scopes(["notes:read"])
        .typ(Some("JWT"))
        .without("aud")
        .mint()
        .unwrap();
    let out = run(&["token", "inspect", &token]);
    assert_eq!(out.code, 1, "{out:#?}");
    let problems = out
        .stdout
        .split_once("problems:")
        .expect("a problems section")
        .1;
    assert!(
        problems.contains("typ is \"JWT\", not \"at+jwt\""),
        "{out:#?}"
    );
    assert!(problems.contains("no \"aud\""), "{out:#?}");
}

#[test]
fn inspect_garbage_cannot_run() {
    let out = run(&["token", "inspect", "not-a-token"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(
        out.stderr
            .starts_with("rmcp-authz: cannot decode the token"),
        "{out:#?}"
    );
}

#[test]
fn inspect_json_has_header_claims_problems_and_verified_false() {
    let f = Fixture::new("inspect-json");
    let token = f.issuer.token(AUDIENCE).typ(None).mint().unwrap();
    let out = run(&["--json", "token", "inspect", &token]);
    assert_eq!(out.code, 1, "no typ is a problem: {out:#?}");
    let v = out.json();
    assert_eq!(v["header"]["alg"], "ES256");
    assert_eq!(v["header"]["kid"], f.issuer.kid());
    assert_eq!(v["claims"]["iss"], ISSUER);
    assert_eq!(v["claims"]["aud"], AUDIENCE);
    assert_eq!(v["verified"], false);
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains("no \"typ\"")),
        "{v:#}"
    );
    let expires_in = v["expires_in_secs"].as_i64().unwrap();
    assert!((3500..=3600).contains(&expires_in), "{v:#}");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'), "{v:#}");
}

#[test]
fn inspect_reads_the_token_from_stdin() {
    let f = Fixture::new("inspect-stdin");
    let token = f.token(&["notes:read"]);
    // As pasted from an Authorization header: a `Bearer ` prefix and a newline.
    let out = run_with_stdin(&["token", "inspect", "-"], &format!("Bearer {token}\n"));
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("\"sub\": \"alice\""), "{out:#?}");

    let empty = run_with_stdin(&["token", "inspect", "-"], "\n");
    assert_eq!(empty.code, 2, "{empty:#?}");
    assert!(empty.stderr.contains("the token is empty"), "{empty:#?}");
}

// ---------------------------------------------------------------------------------------
// token check
// ---------------------------------------------------------------------------------------

#[test]
fn check_accepts_a_valid_token_and_shows_who() {
    let f = Fixture::new("check-ok");
    let config = f.config(NOTES_POLICY);
    let token = f
        .issuer
        .token(AUDIENCE)
        .subject("alice")
        .client_id("notes-app")
        .scopes(["notes:write", "notes:delete"])
        .actor("research-agent")
        .mint()
        .unwrap();
    let out = run(&["token", "check", "--config", path(&config), &token]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.starts_with("ACCEPTED"), "{out:#?}");
    for line in [
        "issuer    https://auth.example.com",
        "subject   alice",
        "client    notes-app",
        "agent     research-agent",
        "scopes    notes:write notes:delete",
        "delegated through research-agent",
        "expiry    expires in",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in {out:#?}");
    }
}

#[test]
fn check_refuses_an_expired_token() {
    let f = Fixture::new("check-expired");
    let config = f.config(NOTES_POLICY);
    let now = now();
    let token = f
        .issuer
        .token(AUDIENCE)
        .scopes(["notes:read"])
        .claim("iat", now - 7200)
        .claim("exp", now - 3600)
        .mint()
        .unwrap();
    let out = run(&["token", "check", "--config", path(&config), &token]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("REJECTED"), "{out:#?}");
    assert!(out.stdout.contains("expired"), "{out:#?}");
    assert!(out.stdout.contains("error=invalid_token"), "{out:#?}");
}

#[test]
fn check_refuses_a_token_for_another_audience() {
    let f = Fixture::new("check-audience");
    let config = f.config(NOTES_POLICY);
    let token = f
        .issuer
        .token("https://other.example.com/mcp")
        .scopes(["notes:read"])
        .mint()
        .unwrap();
    let out = run(&["token", "check", "--config", path(&config), &token]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.contains("REJECTED: wrong audience"), "{out:#?}");
    assert!(out.stdout.contains("WrongAudience"), "{out:#?}");
}

#[test]
fn check_refuses_a_token_signed_by_another_issuer_key() {
    let f = Fixture::new("check-forged");
    let config = f.config(NOTES_POLICY);
    let other = DevIssuer::new(ISSUER).unwrap();
    let token = other.token(AUDIENCE).scopes(["notes:read"]).mint().unwrap();
    let out = run(&["token", "check", "--config", path(&config), &token]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("REJECTED"), "{out:#?}");
}

#[test]
fn check_tool_allowed_through_the_hierarchy() {
    let f = Fixture::new("check-allowed");
    let config = f.config(NOTES_POLICY);
    // notes:write implies notes:read, which list_notes needs.
    let token = f.token(&["notes:write"]);
    let out = run(&[
        "token",
        "check",
        "--config",
        path(&config),
        &token,
        "--tool",
        "list_notes",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("tool list_notes: ALLOWED"), "{out:#?}");

    let whoami = run(&[
        "token",
        "check",
        "--config",
        path(&config),
        &f.token(&[]),
        "--tool",
        "whoami",
    ]);
    assert_eq!(whoami.code, 0, "whoami needs no scope: {whoami:#?}");
}

#[test]
fn check_tool_denied_names_missing_scopes_and_the_challenge() {
    let f = Fixture::new("check-denied");
    let config = f.config(NOTES_POLICY);
    let token = f.token(&["notes:write"]);
    let out = run(&[
        "token",
        "check",
        "--config",
        path(&config),
        &token,
        "--tool",
        "delete_note",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("ACCEPTED"), "{out:#?}");
    assert!(out.stdout.contains("tool delete_note: DENIED"), "{out:#?}");
    assert!(
        out.stdout.contains("the token lacks [\"notes:delete\"]"),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains(
            "403 with WWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"notes:delete\""
        ),
        "{out:#?}"
    );
}

#[test]
fn check_tool_denied_for_the_client_has_no_challenge() {
    let f = Fixture::new("check-client");
    let config = f.config(NOTES_POLICY);
    // Every scope purge needs, but from notes-app rather than admin-console.
    let token = f.token(&["notes:admin", "ops:purge"]);
    let out = run(&[
        "token",
        "check",
        "--config",
        path(&config),
        &token,
        "--tool",
        "purge",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stdout
            .contains("DENIED: tools/call purge is not permitted for client \"notes-app\""),
        "{out:#?}"
    );
    assert!(
        !out.stdout.contains("403"),
        "stepping up would not help: {out:#?}"
    );
}

#[test]
fn check_json_reports_accepted_allowed_and_missing_scopes() {
    let f = Fixture::new("check-json");
    let config = f.config(NOTES_POLICY);
    let token = f.token(&["notes:read"]);
    let denied = run(&[
        "--json",
        "token",
        "check",
        "--config",
        path(&config),
        &token,
        "--tool",
        "write_note",
    ]);
    assert_eq!(denied.code, 1, "{denied:#?}");
    let v = denied.json();
    assert_eq!(v["accepted"], true);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["tool"], "write_note");
    assert_eq!(v["subject"], "alice");
    assert_eq!(v["client_id"], "notes-app");
    assert_eq!(v["scopes"], serde_json::json!(["notes:read"]));
    assert_eq!(v["missing_scopes"], serde_json::json!(["notes:write"]));
    assert_eq!(v["required_scopes"], serde_json::json!(["notes:write"]));
    assert_eq!(v["audience"], AUDIENCE);

    // The token from standard input, `--json` after the subcommand.
    let allowed = run_with_stdin(
        &[
            "token",
            "check",
            "--config",
            path(&config),
            "-",
            "--tool",
            "list_notes",
            "--json",
        ],
        &token,
    );
    assert_eq!(allowed.code, 0, "{allowed:#?}");
    let v = allowed.json();
    assert_eq!(v["accepted"], true);
    assert_eq!(v["allowed"], true);
    assert!(v.get("missing_scopes").is_none(), "{v:#}");

    let refused = run(&[
        "--json",
        "token",
        "check",
        "--config",
        path(&config),
        &f.issuer
            .token("https://other.example.com/mcp")
            .mint()
            .unwrap(),
    ]);
    assert_eq!(refused.code, 1, "{refused:#?}");
    let v = refused.json();
    assert_eq!(v["accepted"], false);
    assert_eq!(v["error_code"], "invalid_token");
    assert!(v["error"].as_str().unwrap().contains("audience"), "{v:#}");
}

#[test]
fn check_resolves_jwks_file_against_the_config_directory() {
    let f = Fixture::new("check-relative");
    f.config(NOTES_POLICY);
    let token = f.token(&["notes:read"]);
    // A relative --config from the parent directory: jwks.json is next to the file,
    // not in the working directory.
    let name = f.dir.file_name().unwrap().to_str().unwrap().to_owned();
    let out = finish(
        command(&[
            "token",
            "check",
            "--config",
            &format!("{name}/rmcp-authz.toml"),
            &token,
        ])
        .current_dir(f.dir.parent().unwrap()),
        None,
    );
    assert_eq!(out.code, 0, "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// policy check
// ---------------------------------------------------------------------------------------

#[test]
fn policy_check_clean_policy() {
    let f = Fixture::new("lint-clean");
    let config = f.config(NOTES_POLICY);
    let out = run(&[
        "policy",
        "check",
        "--config",
        path(&config),
        "--tools",
        NOTES_TOOLS,
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "no problems found (8 rules)\n", "{out:#?}");
}

#[test]
fn policy_check_rule_with_no_clients_is_an_error() {
    let f = Fixture::new("lint-unreachable");
    let config = f.config(
        "[policy.tools]\nlist_notes = \"notes:read\"\nconsole = { requires = \"notes:admin\", clients = [] }\n",
    );
    let out = run(&["policy", "check", "--config", path(&config)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stdout
            .contains("error[unreachable-rule]: tool \"console\" admits no client"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("1 error(s), 0 warning(s)"), "{out:#?}");
}

#[test]
fn policy_check_tool_without_rule_is_a_warning() {
    let f = Fixture::new("lint-tool-without-rule");
    let config = f.config(NOTES_POLICY);
    let tools = format!("{NOTES_TOOLS},export");
    let out = run(&[
        "policy",
        "check",
        "--config",
        path(&config),
        "--tools",
        &tools,
    ]);
    assert_eq!(out.code, 0, "warnings do not fail: {out:#?}");
    assert!(
        out.stdout
            .contains("warning[tool-without-rule]: tool \"export\" has no rule"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("0 error(s), 1 warning(s)"), "{out:#?}");
}

#[test]
fn policy_check_rule_without_tool_is_an_error() {
    let f = Fixture::new("lint-rule-without-tool");
    let config = f.config(NOTES_POLICY);
    let out = run(&[
        "policy",
        "check",
        "--config",
        path(&config),
        "--tools",
        "list_notes,write_note,delete_note,whoami",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stdout
            .contains("error[rule-without-tool]: the rule for tool \"purge\""),
        "{out:#?}"
    );
    assert!(out.stdout.contains("1 error(s), 0 warning(s)"), "{out:#?}");
}

#[test]
fn policy_check_similar_scope_names_are_a_warning() {
    let f = Fixture::new("lint-similar");
    let config =
        f.config("[policy.tools]\nlist_notes = \"notes:read\"\nread_note = \"note:read\"\n");
    let out = run(&["policy", "check", "--config", path(&config)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains(
            "warning[similar-scopes]: scopes \"note:read\" and \"notes:read\" differ only slightly"
        ),
        "{out:#?}"
    );
}

#[test]
fn policy_check_json_counts_errors_and_lists_findings() {
    let f = Fixture::new("lint-json");
    let config = f.config(NOTES_POLICY);
    let out = run(&[
        "--json",
        "policy",
        "check",
        "--config",
        path(&config),
        "--tools",
        "list_notes,write_note,delete_note,whoami,export",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    let v = out.json();
    assert_eq!(v["errors"], 1, "{v:#}");
    let codes: Vec<(&str, &str)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["severity"].as_str().unwrap(), f["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            ("warning", "tool-without-rule"),
            ("error", "rule-without-tool")
        ],
        "{v:#}"
    );
}

// ---------------------------------------------------------------------------------------
// policy show
// ---------------------------------------------------------------------------------------

#[test]
fn policy_show_lists_rules_hierarchy_and_scopes_supported() {
    let f = Fixture::new("show-text");
    let config = f.config(NOTES_POLICY);
    let out = run(&["policy", "show", "--config", path(&config)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows[0], ["kind", "name", "requires", "clients"]);
    assert!(
        rows.contains(&vec!["tool", "list_notes", "notes:read", "(any)"]),
        "{rows:?}"
    );
    assert!(
        rows.contains(&vec![
            "tool",
            "purge",
            "notes:admin ops:purge",
            "admin-console"
        ]),
        "{rows:?}"
    );
    assert!(
        rows.contains(&vec!["tool", "whoami", "(authenticated)", "(any)"]),
        "{rows:?}"
    );
    assert!(
        rows.contains(&vec!["resource", "notes://{id}", "notes:read", "(any)"]),
        "{rows:?}"
    );
    assert!(
        rows.contains(&vec!["prompt", "summarize", "notes:read", "(any)"]),
        "{rows:?}"
    );
    assert!(
        out.stdout
            .contains("hierarchy:\n  notes:admin implies notes:write, notes:delete, notes:read\n  notes:write implies notes:read\n"),
        "{out:#?}"
    );
    assert!(
        out.stdout.ends_with(
            "scopes_supported: notes:admin notes:delete notes:read notes:write ops:purge\n"
        ),
        "{out:#?}"
    );
}

#[test]
fn policy_show_json_parses_and_lists_tools_without_rules() {
    let f = Fixture::new("show-json");
    let config = f.config(NOTES_POLICY);
    let out = run(&[
        "--json",
        "policy",
        "show",
        "--config",
        path(&config),
        "--tools",
        "list_notes,export",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    let v = out.json();
    assert_eq!(
        show_rule(&v, "tool", "write_note")["requires"],
        "notes:write"
    );
    assert_eq!(show_rule(&v, "tool", "purge")["clients"], "admin-console");
    assert_eq!(
        show_rule(&v, "tool", "export")["requires"],
        "(no rule: denied)"
    );
    assert_eq!(
        show_rule(&v, "resource", "notes://index")["requires"],
        "(authenticated)"
    );
    assert_eq!(
        v["hierarchy"],
        serde_json::json!([
            {"scope": "notes:admin", "implies": ["notes:write", "notes:delete", "notes:read"]},
            {"scope": "notes:write", "implies": ["notes:read"]},
        ])
    );
    assert_eq!(
        v["scopes_supported"],
        serde_json::json!([
            "notes:admin",
            "notes:delete",
            "notes:read",
            "notes:write",
            "ops:purge"
        ])
    );
}

/// A rule with `clients = []` admits nobody, and `policy show` must not print it like a
/// rule open to every client.
#[test]
fn policy_show_tells_no_clients_from_any_client() {
    let f = Fixture::new("show-no-clients");
    let config = f.config(
        "[policy.tools]\nlist_notes = \"notes:read\"\nconsole = { requires = \"notes:admin\", clients = [] }\n",
    );
    let out = run(&["--json", "policy", "show", "--config", path(&config)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let v = out.json();
    let open = &show_rule(&v, "tool", "list_notes")["clients"];
    let closed = &show_rule(&v, "tool", "console")["clients"];
    assert_ne!(
        open, closed,
        "a rule admitting no client is shown like one admitting every client: {v:#}"
    );
}

// ---------------------------------------------------------------------------------------
// configuration errors
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_config_key_is_exit_2_naming_key_and_line() {
    let f = Fixture::new("config-unknown");
    let config = f.config_text(&format!(
        "[verifier]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"jwks.json\"\nleway_secs = 30\n"
    ));
    for args in [
        vec!["policy", "check", "--config", path(&config)],
        vec!["policy", "show", "--config", path(&config)],
        vec!["token", "check", "--config", path(&config), "x.y.z"],
    ] {
        let out = run(&args);
        assert_eq!(out.code, 2, "{out:#?}");
        assert!(out.stdout.is_empty(), "{out:#?}");
        assert!(out.stderr.starts_with("rmcp-authz: "), "{out:#?}");
        assert!(out.stderr.contains("leway_secs"), "{out:#?}");
        assert!(out.stderr.contains("line 5"), "{out:#?}");
    }
}

#[test]
fn bad_expression_is_exit_2_naming_rule_and_line() {
    let f = Fixture::new("config-expr");
    // Line 5 is `[policy.tools]`, line 7 the bad rule.
    let config =
        f.config("[policy.tools]\nlist_notes = \"notes:read\"\nwrite_note = \"notes:write |\"\n");
    let out = run(&["policy", "check", "--config", path(&config)]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("rmcp-authz: policy.tools.\"write_note\" (line 7): scope expression"),
        "{out:#?}"
    );
}

/// Every error names the key at fault; for the `unlisted_*` rules that key is
/// `policy.unlisted_tools` (and so on).
#[test]
fn bad_unlisted_rule_names_its_key() {
    let f = Fixture::new("config-unlisted");
    let config = f.config("[policy]\nunlisted_tools = \"a (b\"\n");
    let out = run(&["policy", "check", "--config", path(&config)]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("rmcp-authz: policy.unlisted_tools (line 6): scope expression"),
        "{out:#?}"
    );
}

#[test]
fn missing_config_file_is_exit_2() {
    let f = Fixture::new("config-missing");
    let missing = f.dir.join("nope.toml");
    let token = f.token(&["notes:read"]);
    for args in [
        vec!["policy", "check", "--config", path(&missing)],
        vec!["policy", "show", "--config", path(&missing)],
        vec!["token", "check", "--config", path(&missing), &token],
    ] {
        let out = run(&args);
        assert_eq!(out.code, 2, "{out:#?}");
        assert!(
            out.stderr.contains("cannot read configuration file")
                && out.stderr.contains("nope.toml"),
            "{out:#?}"
        );
    }
}

#[test]
fn bad_arguments_are_exit_2() {
    let out = run(&["token", "check", "some.token.here"]);
    assert_eq!(out.code, 2, "--config is required: {out:#?}");
    assert!(out.stderr.contains("--config"), "{out:#?}");
    let out = run(&["policy", "frobnicate"]);
    assert_eq!(out.code, 2, "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// audit verify
// ---------------------------------------------------------------------------------------

/// Writes `n` events to a fresh audit file in the fixture's directory.
fn audit_file(f: &Fixture, n: usize) -> PathBuf {
    use rmcp_authz::audit::{AuditEvent, AuditSink, DecisionKind, EventKind, JsonLines, Outcome};
    let path = f.dir.join("audit.jsonl");
    let sink = JsonLines::open(&path).expect("open audit file");
    let events: Vec<AuditEvent> = (0..n)
        .map(|_| AuditEvent::new(EventKind::ToolCall, DecisionKind::Allow, Outcome::Success))
        .collect();
    sink.write(&events).expect("write");
    sink.flush(true).expect("flush");
    path
}

#[test]
fn audit_verify_accepts_an_intact_chain() {
    let f = Fixture::new("audit-ok");
    let file = audit_file(&f, 3);
    let out = run(&["audit", "verify", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("3 records, chain intact"), "{out:#?}");
    let out = run(&["--json", "audit", "verify", path(&file)]);
    assert_eq!(out.json()["intact"], true, "{out:#?}");
}

#[test]
fn audit_verify_names_the_first_broken_record() {
    let f = Fixture::new("audit-broken");
    let file = audit_file(&f, 3);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = run(&["audit", "verify", path(&file)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("BROKEN: "), "{out:#?}");
    assert!(out.stdout.contains("line 2"), "{out:#?}");
}

#[test]
fn audit_verify_reports_a_torn_tail() {
    let f = Fixture::new("audit-torn");
    let file = audit_file(&f, 2);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"{\"schema_version\":1");
    std::fs::write(&file, bytes).unwrap();
    let out = run(&["audit", "verify", path(&file)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stdout.contains("2 records") && out.stdout.contains("TORN"),
        "{out:#?}"
    );
}

#[test]
fn audit_verify_of_a_missing_file_cannot_run() {
    let out = run(&["audit", "verify", "/nonexistent/audit.jsonl"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("/nonexistent/audit.jsonl"), "{out:#?}");
}

/// Verifies `file` after `tamper` rewrote its lines; returns the run.
fn verify_tampered(file: &Path, tamper: impl FnOnce(&mut Vec<String>)) -> Run {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let before = lines.clone();
    tamper(&mut lines);
    assert_ne!(lines, before, "the tampering changed nothing");
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
    run(&["audit", "verify", path(file)])
}

#[test]
fn audit_verify_catches_an_edited_record() {
    let f = Fixture::new("audit-edited");
    let file = audit_file(&f, 4);
    // Line 2 now claims a denial; its hash no longer matches line 3's prev_hash.
    let out = verify_tampered(&file, |lines| {
        lines[1] = lines[1].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    });
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("BROKEN: "), "{out:#?}");
    assert!(out.stdout.contains("line 3"), "{out:#?}");
}

#[test]
fn audit_verify_catches_a_reordered_pair() {
    let f = Fixture::new("audit-reordered");
    let file = audit_file(&f, 4);
    let out = verify_tampered(&file, |lines| lines.swap(1, 2));
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("BROKEN: "), "{out:#?}");
    assert!(out.stdout.contains("line 2"), "{out:#?}");
}

#[test]
fn audit_verify_catches_a_deleted_last_but_one_record() {
    let f = Fixture::new("audit-deleted-last-but-one");
    let file = audit_file(&f, 4);
    let out = verify_tampered(&file, |lines| {
        lines.remove(2);
    });
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("BROKEN: "), "{out:#?}");
    assert!(out.stdout.contains("line 3"), "{out:#?}");
    let json = run(&["--json", "audit", "verify", path(&file)]).json();
    assert_eq!(json["intact"], false, "{json:#}");
}
