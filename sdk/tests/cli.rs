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
    dir: tempfile::TempDir,
    issuer: DevIssuer,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = tempfile::TempDir::with_prefix(name).unwrap();
        let issuer = DevIssuer::new(ISSUER).unwrap();
        std::fs::write(dir.path().join("jwks.json"), issuer.jwks().to_string()).unwrap();
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
        let path = self.dir.path().join("rmcp-authz.toml");
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
    let name = f
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let out = finish(
        command(&[
            "token",
            "check",
            "--config",
            &format!("{name}/rmcp-authz.toml"),
            &token,
        ])
        .current_dir(f.dir.path().parent().unwrap()),
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
    let missing = f.dir.path().join("nope.toml");
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

/// Every error that stops a command prints what happened as the error's message, on one
/// `rmcp-authz: ` line (plus `caused by:` lines for causes it does not say), never a
/// `Debug` form such as `Io { path: .., source: Os { .. } }`.
#[test]
fn errors_that_stop_a_command_print_their_message_never_a_debug_form() {
    let f = Fixture::new("error-messages");
    let no_keys = f.config_text(&format!(
        "[verifier]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"missing.jwks.json\"\n"
    ));
    let token = f.token(&["notes:read"]);
    let missing = f.dir.path().join("nope.toml");
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["policy", "check", "--config", path(&missing)],
            "cannot read configuration file",
        ),
        (
            vec!["token", "check", "--config", path(&no_keys), &token],
            "verifier.jwks_file (line 4): cannot read key file",
        ),
        (
            vec!["token", "inspect", "not-a-token"],
            "cannot decode the token: ",
        ),
        (vec!["audit", "verify", path(f.dir.path())], "cannot read "),
        (vec!["audit", "query", path(f.dir.path())], "cannot read "),
    ];
    for (args, says) in cases {
        let out = run(&args);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(out.stderr.starts_with("rmcp-authz: "), "{args:?}: {out:#?}");
        assert!(out.stderr.contains(says), "{args:?}: {out:#?}");
        for debug in ["{", "Io ", "Os ", "kind: ", "Error: "] {
            assert!(
                !out.stderr.contains(debug),
                "{args:?}: a Debug form: {out:#?}"
            );
        }
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
    let path = f.dir.path().join("audit.jsonl");
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

/// The lines of `file`.
fn file_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `last_hash` that `audit verify --json` prints for `files`.
fn last_hash(files: &[&Path]) -> String {
    let mut args = vec!["--json", "audit", "verify"];
    args.extend(files.iter().map(|f| path(f)));
    let out = run(&args);
    assert_eq!(out.code, 0, "{out:#?}");
    out.json()["last_hash"].as_str().unwrap().to_owned()
}

/// Issue 18: an anchor saved earlier is found while records are only appended.
#[test]
fn audit_verify_finds_a_saved_anchor_after_appends() {
    let f = Fixture::new("audit-anchor");
    let file = audit_file(&f, 3);
    let saved = last_hash(&[&file]);
    // Two more records, appended by a restarted sink.
    let sink = JsonLines::open(&file).unwrap();
    sink.write(&[tagged("a"), tagged("b")]).unwrap();
    sink.flush(true).unwrap();
    let out = run(&["audit", "verify", "--anchor", &saved, path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("5 records, chain intact"), "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "anchor found: {} line 3; 2 records appended since",
            path(&file)
        )),
        "{out:#?}"
    );
    let json = run(&["--json", "audit", "verify", "--anchor", &saved, path(&file)]).json();
    assert_eq!(json["intact"], true, "{json:#}");
    assert_eq!(json["anchor"]["hash"], saved.as_str(), "{json:#}");
    assert_eq!(json["anchor"]["found"], true, "{json:#}");
    assert_eq!(json["anchor"]["file"], path(&file), "{json:#}");
    assert_eq!(json["anchor"]["line"], 3, "{json:#}");
    assert_eq!(json["anchor"]["records_after"], 2, "{json:#}");

    // From a file, with the whitespace an editor or `echo` leaves, in capitals.
    let anchor_file = f.dir.path().join("anchor.txt");
    std::fs::write(&anchor_file, format!("  {}\n\n", saved.to_uppercase())).unwrap();
    let out = run(&[
        "audit",
        "verify",
        "--anchor-file",
        path(&anchor_file),
        path(&file),
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("anchor found"), "{out:#?}");
}

/// Issue 18: the newest records dropped (the file truncated) leave every remaining link
/// intact; only the anchor catches it.
#[test]
fn audit_verify_anchor_catches_dropped_last_records() {
    let f = Fixture::new("audit-anchor-dropped");
    let file = audit_file(&f, 5);
    let saved = last_hash(&[&file]);
    let lines = file_lines(&file);
    let keep: usize = lines[..3].iter().map(|l| l.len() + 1).sum();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(keep as u64)
        .unwrap();
    // Without the anchor, nothing shows.
    let out = run(&["audit", "verify", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let out = run(&["audit", "verify", "--anchor", &saved, path(&file)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("BROKEN: "), "{out:#?}");
    assert!(out.stdout.contains("anchored record is gone"), "{out:#?}");
    assert!(out.stdout.contains(&saved), "{out:#?}");
    let json = run(&["--json", "audit", "verify", "--anchor", &saved, path(&file)]).json();
    assert_eq!(json["intact"], false, "{json:#}");
    assert_eq!(json["kind"], "anchor_missing", "{json:#}");
    assert_eq!(json["file"], path(&file), "{json:#}");
    assert_eq!(json["line"], 3, "{json:#}");
    assert_eq!(json["anchor"]["hash"], saved.as_str(), "{json:#}");
    assert_eq!(json["anchor"]["found"], false, "{json:#}");
}

/// Issue 18: the last record rewritten (its link to the one before kept) changes its hash;
/// the anchor catches it.
#[test]
fn audit_verify_anchor_catches_a_rewritten_last_record() {
    let f = Fixture::new("audit-anchor-rewritten");
    let file = audit_file(&f, 3);
    let saved = last_hash(&[&file]);
    let out = verify_tampered(&file, |lines| {
        lines[2] = lines[2].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    });
    assert_eq!(out.code, 0, "the links still hold: {out:#?}");
    let out = run(&["audit", "verify", "--anchor", &saved, path(&file)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.contains("anchored record is gone"), "{out:#?}");
}

#[test]
fn audit_verify_refuses_an_anchor_that_is_not_a_hash() {
    let f = Fixture::new("audit-anchor-bad");
    let file = audit_file(&f, 1);
    let out = run(&["audit", "verify", "--anchor", "not-a-hash", path(&file)]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("--anchor"), "{out:#?}");
    assert!(out.stderr.contains("64 hex digits"), "{out:#?}");
    let missing = f.dir.path().join("no-anchor.txt");
    let out = run(&[
        "audit",
        "verify",
        "--anchor-file",
        path(&missing),
        path(&file),
    ]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("cannot read the anchor file"),
        "{out:#?}"
    );
    let out = run(&[
        "audit",
        "verify",
        "--anchor",
        &"0".repeat(64),
        "--anchor-file",
        path(&missing),
        path(&file),
    ]);
    assert_eq!(out.code, 2, "one or the other: {out:#?}");
}

/// Issue 18: `--json` names the file, line and kind of a break.
#[test]
fn audit_verify_json_names_the_file_line_and_kind_of_an_edited_record() {
    let f = Fixture::new("audit-json-edited");
    let file = audit_file(&f, 4);
    let lines = file_lines(&file);
    let out = verify_tampered(&file, |lines| {
        lines[1] = lines[1].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    });
    assert_eq!(out.code, 1, "{out:#?}");
    let json = run(&["--json", "audit", "verify", path(&file)]).json();
    assert_eq!(json["intact"], false, "{json:#}");
    assert_eq!(json["kind"], "broken", "{json:#}");
    assert_eq!(json["file"], path(&file), "{json:#}");
    assert_eq!(json["line"], 3, "{json:#}");
    // The record on line 3 still carries the hash of line 2 as it was written.
    let carried: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(json["found"], carried["prev_hash"], "{json:#}");
    assert_ne!(json["expected"], json["found"], "{json:#}");
    assert_eq!(json["expected"].as_str().unwrap().len(), 64, "{json:#}");
    assert!(
        json["error"].as_str().unwrap().contains("line 3"),
        "{json:#}"
    );
}

#[test]
fn audit_verify_json_names_a_torn_record_inside_the_chain() {
    let f = Fixture::new("audit-json-torn-inside");
    let old = audit_file(&f, 3);
    let lines = file_lines(&old);
    let newer = f.dir.path().join("audit.jsonl.newer");
    std::fs::write(&newer, lines[2].clone() + "\n").unwrap();
    // The older file loses its last newline and record: a torn line 2, then more records.
    std::fs::write(&old, format!("{}\n{}", lines[0], &lines[1][..20])).unwrap();
    let json = run(&["--json", "audit", "verify", path(&old), path(&newer)]).json();
    assert_eq!(json["intact"], false, "{json:#}");
    assert_eq!(json["kind"], "torn_inside", "{json:#}");
    assert_eq!(json["file"], path(&old), "{json:#}");
    assert_eq!(json["line"], 2, "{json:#}");

    // A line that is not JSON.
    std::fs::write(&old, format!("{}\nnot json\n", lines[0])).unwrap();
    let json = run(&["--json", "audit", "verify", path(&old)]).json();
    assert_eq!(json["kind"], "malformed", "{json:#}");
    assert_eq!(
        (json["file"].as_str(), json["line"].as_u64()),
        (Some(path(&old)), Some(2))
    );
}

/// Issue 18: a deleted first record is an error unless the caller says older files were
/// rotated away.
#[test]
fn audit_verify_a_deleted_first_record_fails_unless_rotated() {
    let f = Fixture::new("audit-deleted-first");
    let file = audit_file(&f, 3);
    assert_eq!(run(&["audit", "verify", path(&file)]).code, 0);
    let out = verify_tampered(&file, |lines| {
        lines.remove(0);
    });
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("BROKEN: "), "{out:#?}");
    assert!(out.stdout.contains("line 1"), "{out:#?}");
    assert!(
        out.stdout.contains("earlier records were deleted"),
        "{out:#?}"
    );
    let json = run(&["--json", "audit", "verify", path(&file)]).json();
    assert_eq!(json["kind"], "missing_start", "{json:#}");
    assert_eq!(json["file"], path(&file), "{json:#}");
    assert_eq!(json["line"], 1, "{json:#}");

    let out = run(&["audit", "verify", "--rotated", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("2 records, chain intact"), "{out:#?}");
    assert!(
        out.stdout.contains("continues an earlier chain"),
        "{out:#?}"
    );
    let json = run(&["--json", "audit", "verify", "--rotated", path(&file)]).json();
    assert_eq!(json["intact"], true, "{json:#}");
    assert_eq!(json["starts_at_genesis"], false, "{json:#}");
}

// ---------------------------------------------------------------------------------------
// audit repair
// ---------------------------------------------------------------------------------------

/// The start of a record cut short by a crash.
const TORN: &[u8] = b"{\"schema_version\":1,\"id\":\"01JD";

/// Appends [`TORN`] to `file`.
fn tear(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes.extend_from_slice(TORN);
    std::fs::write(file, bytes).unwrap();
}

/// The files in `dir` whose names start with `prefix`, sorted.
fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}

/// Issue 18: a torn file repaired keeps one chain: the sink reopens it and continues, and
/// the file verifies, alone and with the file a later rotation starts.
#[test]
fn audit_repair_lets_the_chain_continue_across_the_cut() {
    let f = Fixture::new("audit-repair");
    let file = audit_file(&f, 3);
    let intact = file_lines(&file);
    tear(&file);
    let out = run(&["audit", "verify", path(&file)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.contains("audit repair"), "{out:#?}");
    let refused = JsonLines::open(&file).unwrap_err().to_string();
    assert!(
        refused.contains(&format!("rmcp-authz audit repair {}", path(&file))),
        "{refused}"
    );
    assert!(!refused.contains("aside"), "{refused}");

    let out = run(&["audit", "repair", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let sides = files_starting(f.dir.path(), "audit.jsonl.torn-");
    assert_eq!(sides.len(), 1, "one side file: {sides:?}");
    assert_eq!(
        std::fs::read(&sides[0]).unwrap(),
        TORN,
        "the torn bytes, exactly"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&sides[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        out.stdout.contains("line 4 was incomplete") && out.stdout.contains(path(&sides[0])),
        "{out:#?}"
    );
    assert_eq!(
        file_lines(&file),
        intact,
        "the complete records are untouched"
    );

    // The sink opens it again and continues the chain; a rotation then starts a new file.
    let sink = JsonLines::open(&file)
        .expect("a repaired file opens")
        .rotate_at(1);
    sink.write(&[tagged("after-repair")]).unwrap();
    sink.write(&[tagged("next")]).unwrap();
    sink.flush(true).unwrap();
    drop(sink);
    let rotated = files_starting(f.dir.path(), "audit.jsonl.2");
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    let mut args = vec!["audit", "verify"];
    args.extend(rotated.iter().map(|p| path(p)));
    args.push(path(&file));
    let out = run(&args);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("5 records, chain intact"), "{out:#?}");
    // The newest file alone continues the chain: rotated.
    assert_eq!(run(&["audit", "verify", path(&file)]).code, 1);
    assert_eq!(run(&["audit", "verify", "--rotated", path(&file)]).code, 0);
}

#[test]
fn audit_repair_json_says_what_it_did() {
    let f = Fixture::new("audit-repair-json");
    let file = audit_file(&f, 2);
    let kept = std::fs::metadata(&file).unwrap().len();
    let before = last_hash(&[&file]);
    tear(&file);
    let json = run(&["--json", "audit", "repair", path(&file)]).json();
    assert_eq!(json["repaired"], true, "{json:#}");
    assert_eq!(json["file"], path(&file), "{json:#}");
    assert_eq!(json["torn_line"], 3, "{json:#}");
    assert_eq!(json["torn_bytes"], TORN.len(), "{json:#}");
    assert_eq!(json["kept_bytes"], kept, "{json:#}");
    assert_eq!(json["records"], 2, "{json:#}");
    assert_eq!(json["last_hash"], before.as_str(), "{json:#}");
    let side = PathBuf::from(json["side_file"].as_str().unwrap());
    assert_eq!(std::fs::read(side).unwrap(), TORN);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), kept);
}

#[test]
fn audit_repair_refuses_a_file_that_is_not_torn() {
    let f = Fixture::new("audit-repair-whole");
    let file = audit_file(&f, 2);
    let before = std::fs::read(&file).unwrap();
    let out = run(&["audit", "repair", path(&file)]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.starts_with("rmcp-authz: "), "{out:#?}");
    assert!(out.stderr.contains("is not torn"), "{out:#?}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert!(files_starting(f.dir.path(), "audit.jsonl.torn-").is_empty());
    // Nor what cannot be read, said without a Debug form.
    let out = run(&["audit", "repair", path(f.dir.path())]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("cannot repair "), "{out:#?}");
    assert!(!out.stderr.contains("Os {"), "{out:#?}");
}

#[test]
fn audit_repair_refuses_when_the_records_before_the_cut_do_not_verify() {
    let f = Fixture::new("audit-repair-broken");
    let file = audit_file(&f, 4);
    let out = verify_tampered(&file, |lines| {
        lines[1] = lines[1].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    });
    assert_eq!(out.code, 1, "{out:#?}");
    tear(&file);
    let before = std::fs::read(&file).unwrap();
    let out = run(&["audit", "repair", path(&file)]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("do not verify"), "{out:#?}");
    assert!(out.stderr.contains("line 3"), "{out:#?}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "left as it was");
    assert!(files_starting(f.dir.path(), "audit.jsonl.torn-").is_empty());
}

// ---------------------------------------------------------------------------------------
// audit query, stats, tail
// ---------------------------------------------------------------------------------------

use rmcp_authz::audit::{
    AuditEvent, AuditSink, DecisionKind, EventKind, JsonLines, Outcome as EventOutcome,
};

/// An event with the fields the filters look at.
fn event(
    timestamp: &str,
    agent: Option<&str>,
    subject: Option<&str>,
    kind: EventKind,
    target: Option<&str>,
    decision: DecisionKind,
    outcome: EventOutcome,
) -> AuditEvent {
    let mut e = AuditEvent::new(kind, decision, outcome);
    e.timestamp = timestamp.to_owned();
    e.agent = agent.map(str::to_owned);
    e.subject = subject.map(str::to_owned);
    e.target = target.map(str::to_owned);
    e
}

/// Writes `events` to `name` in the fixture's directory; returns the file and its lines.
fn write_events(f: &Fixture, name: &str, events: &[AuditEvent]) -> (PathBuf, Vec<String>) {
    let file = f.dir.path().join(name);
    let sink = JsonLines::open(&file).expect("open audit file");
    sink.write(events).expect("write");
    sink.flush(true).expect("flush");
    let lines = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (file, lines)
}

/// Six events: agents planner (0, 1, 5), researcher (2, 4) and none (3); subjects alice
/// (0, 2, 4, 5) and bob (1); denials 1 and 3; errors 4 (tool) and 5 (protocol).
fn mixed_audit_file(f: &Fixture) -> (PathBuf, Vec<String>) {
    use DecisionKind::{Allow, Deny};
    use EventKind::{AuthenticationFailure, PromptGet, ResourceRead, ToolCall};
    use EventOutcome::{Denied, ProtocolError, Success, ToolError};
    let mut events = vec![
        event(
            "2026-11-20T10:00:00.000Z",
            Some("planner"),
            Some("alice"),
            ToolCall,
            Some("write_note"),
            Allow,
            Success,
        ),
        event(
            "2026-11-22T10:00:00.000Z",
            Some("planner"),
            Some("bob"),
            ToolCall,
            Some("delete_note"),
            Deny,
            Denied,
        ),
        event(
            "2026-11-24T00:00:00.000Z",
            Some("researcher"),
            Some("alice"),
            ResourceRead,
            Some("notes://1"),
            Allow,
            Success,
        ),
        event(
            "2026-11-25T10:00:00.000Z",
            None,
            None,
            AuthenticationFailure,
            None,
            Deny,
            Denied,
        ),
        event(
            "2026-11-26T10:00:00.000Z",
            Some("researcher"),
            Some("alice"),
            ToolCall,
            Some("write_note"),
            Allow,
            ToolError,
        ),
        // Without milliseconds: times are compared as instants, not as text.
        event(
            "2026-11-27T10:00:00Z",
            Some("planner"),
            Some("alice"),
            PromptGet,
            Some("summarize"),
            Allow,
            ProtocolError,
        ),
    ];
    events[1].reason_code = Some("insufficient_scope".to_owned());
    events[3].reason_code = Some("missing_token".to_owned());
    write_events(f, "audit.jsonl", &events)
}

/// The indices in `lines` of the lines `out` printed, which must be among them unchanged.
fn printed_lines(out: &Run, lines: &[String]) -> Vec<usize> {
    out.stdout
        .lines()
        .map(|printed| {
            lines
                .iter()
                .position(|l| l == printed)
                .unwrap_or_else(|| panic!("{printed:?} is not a line of the file: {out:#?}"))
        })
        .collect()
}

/// The rows of a table `out` printed, as cells; checks that every row's cells start at
/// the header's columns.
fn table_rows(out: &Run) -> Vec<Vec<String>> {
    let mut lines = out.stdout.lines();
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no header: {out:#?}"));
    let starts: Vec<usize> = header
        .match_indices(|c: char| c != ' ')
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || header.as_bytes()[i - 1] == b' ')
        .collect();
    lines
        .map(|line| {
            for &start in &starts {
                let aligned = line.as_bytes().get(start).is_some_and(|&b| b != b' ')
                    && (start == 0 || line.as_bytes()[start - 1] == b' ');
                assert!(aligned, "{line:?} is not aligned with {header:?}");
            }
            line.split_whitespace().map(str::to_owned).collect()
        })
        .collect()
}

/// Checks that `audit query FILE ARGS` selects exactly the events `expected` (indices
/// into `lines`), as JSON Lines and as a table.
fn assert_query(file: &Path, lines: &[String], args: &[&str], expected: &[usize]) {
    let mut jsonl = vec!["audit", "query", path(file), "--format", "jsonl"];
    jsonl.extend_from_slice(args);
    let out = run(&jsonl);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(printed_lines(&out, lines), expected, "{args:?}: {out:#?}");

    let mut table = vec!["audit", "query", path(file)];
    table.extend_from_slice(args);
    let out = run(&table);
    assert_eq!(out.code, 0, "{out:#?}");
    if expected.is_empty() {
        assert!(out.stdout.is_empty(), "{out:#?}");
        assert!(out.stderr.contains("no matching events"), "{out:#?}");
        return;
    }
    let times: Vec<String> = expected
        .iter()
        .map(|&i| serde_json::from_str::<Value>(&lines[i]).unwrap()["timestamp"].to_string())
        .map(|t| t.trim_matches('"').to_owned())
        .collect();
    let rows = table_rows(&out);
    let shown: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(shown, times, "{args:?}: {out:#?}");
}

#[test]
fn audit_query_filters_select_exactly_the_matching_events() {
    let f = Fixture::new("audit-query");
    let (file, lines) = mixed_audit_file(&f);
    let cases: &[(&[&str], &[usize])] = &[
        (&[], &[0, 1, 2, 3, 4, 5]),
        (&["--agent", "planner"], &[0, 1, 5]),
        (&["--agent", "researcher"], &[2, 4]),
        (&["--subject", "alice"], &[0, 2, 4, 5]),
        (&["--subject", "bob"], &[1]),
        (&["--tool", "write_note"], &[0, 4]),
        // --tool matches the target of any kind of event.
        (&["--tool", "notes://1"], &[2]),
        (&["--tool", "summarize"], &[5]),
        (&["--decision", "deny"], &[1, 3]),
        (&["--decision", "allow"], &[0, 2, 4, 5]),
        (&["--outcome", "tool_error"], &[4]),
        (&["--outcome", "denied"], &[1, 3]),
        (&["--kind", "authentication_failure"], &[3]),
        (&["--kind", "tool_call"], &[0, 1, 4]),
        (&["--agent", "planner", "--subject", "alice"], &[0, 5]),
        (&["--agent", "planner", "--decision", "deny"], &[1]),
        (&["--limit", "2"], &[0, 1]),
        (&["--agent", "planner", "--limit", "2"], &[0, 1]),
        (&["--limit", "0"], &[]),
        (&["--agent", "nobody"], &[]),
        (&["--tool", "write"], &[]),
    ];
    for (args, expected) in cases {
        assert_query(&file, &lines, args, expected);
    }

    // --json means JSON Lines too, before or after the subcommand.
    let out = run(&[
        "--json",
        "audit",
        "query",
        path(&file),
        "--agent",
        "planner",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(printed_lines(&out, &lines), [0, 1, 5], "{out:#?}");
    let out = run(&[
        "audit",
        "query",
        path(&file),
        "--decision",
        "deny",
        "--json",
    ]);
    assert_eq!(printed_lines(&out, &lines), [1, 3], "{out:#?}");
    // The lines come out byte for byte, newline-terminated.
    let out = run(&["--json", "audit", "query", path(&file)]);
    assert_eq!(out.stdout, std::fs::read_to_string(&file).unwrap());
}

#[test]
fn audit_query_table_shows_every_column() {
    let f = Fixture::new("audit-query-table");
    let (file, _) = mixed_audit_file(&f);
    let out = run(&["audit", "query", path(&file), "--decision", "deny"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let header = out.stdout.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "time",
            "agent",
            "subject",
            "kind",
            "target",
            "decision",
            "outcome",
            "reason_code"
        ],
        "{out:#?}"
    );
    assert_eq!(
        table_rows(&out),
        [
            [
                "2026-11-22T10:00:00.000Z",
                "planner",
                "bob",
                "tool_call",
                "delete_note",
                "deny",
                "denied",
                "insufficient_scope"
            ],
            [
                "2026-11-25T10:00:00.000Z",
                "-",
                "-",
                "authentication_failure",
                "-",
                "deny",
                "denied",
                "missing_token"
            ],
        ],
        "{out:#?}"
    );
    assert!(out.stderr.is_empty(), "{out:#?}");
}

#[test]
fn audit_query_time_range_compares_instants() {
    let f = Fixture::new("audit-query-time");
    let (file, lines) = mixed_audit_file(&f);
    let cases: &[(&[&str], &[usize])] = &[
        // --since is inclusive: event 2 is at exactly 2026-11-24T00:00:00.000Z.
        (&["--since", "2026-11-24T00:00:00Z"], &[2, 3, 4, 5]),
        // --until is exclusive.
        (&["--until", "2026-11-24T00:00:00Z"], &[0, 1]),
        (&["--since", "2026-11-24T00:00:00.001Z"], &[3, 4, 5]),
        // The same instant with an offset, and a date for midnight UTC.
        (&["--since", "2026-11-24T01:00:00+01:00"], &[2, 3, 4, 5]),
        (&["--since", "2026-11-23T23:00:00-01:00"], &[2, 3, 4, 5]),
        (
            &[
                "--since",
                "2026-11-22",
                "--until",
                "2026-11-26T10:00:00.000Z",
            ],
            &[1, 2, 3],
        ),
        // Event 5 is written without milliseconds.
        (&["--since", "2026-11-27T10:00:00.000Z"], &[5]),
        (
            &[
                "--until",
                "2026-11-27T10:00:00.001Z",
                "--since",
                "2026-11-26T10:00:00.001Z",
            ],
            &[5],
        ),
        (&["--since", "2026-11-28T00:00:00Z"], &[]),
        (
            &["--since", "2026-11-24T00:00:00Z", "--agent", "planner"],
            &[5],
        ),
    ];
    for (args, expected) in cases {
        assert_query(&file, &lines, args, expected);
    }
    let out = run(&["audit", "query", path(&file), "--since", "yesterday"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("--since"), "{out:#?}");
}

#[test]
fn audit_query_reads_files_in_the_order_given() {
    let f = Fixture::new("audit-query-files");
    let (file, lines) = mixed_audit_file(&f);
    let newer = event(
        "2026-11-28T10:00:00.000Z",
        Some("planner"),
        None,
        EventKind::List,
        None,
        DecisionKind::Allow,
        EventOutcome::Success,
    );
    let (second, second_lines) = write_events(&f, "audit-2.jsonl", &[newer]);
    let out = run(&[
        "--json",
        "audit",
        "query",
        path(&file),
        path(&second),
        "--agent",
        "planner",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    let expected = [&lines[0], &lines[1], &lines[5], &second_lines[0]];
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected, "{out:#?}");
    let out = run(&[
        "--json",
        "audit",
        "query",
        path(&second),
        path(&file),
        "--agent",
        "planner",
    ]);
    let expected = [&second_lines[0], &lines[0], &lines[1], &lines[5]];
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected, "{out:#?}");
}

#[test]
fn audit_query_malformed_line_cannot_run_and_names_the_line() {
    let f = Fixture::new("audit-query-malformed");
    let (file, mut lines) = mixed_audit_file(&f);
    for bad in ["not json", "{\"schema_version\": 1}", "{\"timestamp\": 3}"] {
        lines[2] = bad.to_owned();
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        for args in [
            vec!["audit", "query", path(&file)],
            vec!["--json", "audit", "query", path(&file)],
            vec!["audit", "stats", path(&file)],
            vec!["audit", "tail", path(&file)],
        ] {
            let out = run(&args);
            assert_eq!(out.code, 2, "{out:#?}");
            assert!(out.stderr.starts_with("rmcp-authz: "), "{out:#?}");
            assert!(
                out.stderr
                    .contains(&format!("{} line 3: not an audit event", path(&file))),
                "{out:#?}"
            );
        }
    }
    // An event whose timestamp is not a time is not an audit event either.
    std::fs::remove_file(&file).unwrap();
    let (file, mut lines) = mixed_audit_file(&f);
    lines[4] = lines[4].replace("2026-11-26T10:00:00.000Z", "last tuesday");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = run(&["audit", "query", path(&file), "--since", "2026-11-24"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("line 5: not an audit event"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("last tuesday"), "{out:#?}");
}

#[test]
fn audit_query_skips_a_torn_last_line_with_a_warning() {
    let f = Fixture::new("audit-query-torn");
    let (file, lines) = mixed_audit_file(&f);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"{\"schema_version\":1,\"id\":\"0");
    std::fs::write(&file, bytes).unwrap();
    let out = run(&["--json", "audit", "query", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(printed_lines(&out, &lines), [0, 1, 2, 3, 4, 5], "{out:#?}");
    assert!(out.stderr.starts_with("rmcp-authz: warning: "), "{out:#?}");
    assert!(
        out.stderr.contains(&format!("{} line 7", path(&file))),
        "{out:#?}"
    );
    let out = run(&["audit", "query", path(&file), "--agent", "researcher"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(table_rows(&out).len(), 2, "{out:#?}");
    assert!(out.stderr.contains("line 7"), "{out:#?}");
}

#[test]
fn audit_query_of_a_missing_file_cannot_run() {
    let out = run(&["audit", "query", "/nonexistent/audit.jsonl"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("rmcp-authz: cannot read /nonexistent/audit.jsonl"),
        "{out:#?}"
    );
    let out = run(&["audit", "query", "/tmp", "--decision", "perhaps"]);
    assert_eq!(out.code, 2, "{out:#?}");
}

/// The `stats --json` entry of `agent` (`null` for events without one).
fn agent_stats<'a>(stats: &'a Value, agent: &Value) -> &'a Value {
    stats["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| &a["agent"] == agent)
        .unwrap_or_else(|| panic!("no agent {agent} in {stats:#}"))
}

#[test]
fn audit_stats_counts_per_agent() {
    let f = Fixture::new("audit-stats");
    let (file, _) = mixed_audit_file(&f);
    let out = run(&["--json", "audit", "stats", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let v = out.json();
    let agents: Vec<&Value> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["agent"])
        .collect();
    assert_eq!(
        agents,
        [
            &Value::from("planner"),
            &Value::from("researcher"),
            &Value::Null
        ],
        "{v:#}"
    );
    let counts =
        |a: &Value| ["events", "allowed", "denied", "errors"].map(|k| a[k].as_u64().unwrap());
    let planner = agent_stats(&v, &"planner".into());
    assert_eq!(counts(planner), [3, 2, 1, 1], "{v:#}");
    assert_eq!(
        planner["top_targets"],
        serde_json::json!([
            {"target": "delete_note", "count": 1},
            {"target": "summarize", "count": 1},
            {"target": "write_note", "count": 1},
        ])
    );
    let researcher = agent_stats(&v, &"researcher".into());
    assert_eq!(counts(researcher), [2, 2, 0, 1], "{v:#}");
    let none = agent_stats(&v, &Value::Null);
    assert_eq!(counts(none), [1, 0, 1, 0], "{v:#}");
    assert_eq!(none["top_targets"], serde_json::json!([]));
    assert_eq!(counts(&v["total"]), [6, 4, 2, 2], "{v:#}");
    assert_eq!(
        v["total"]["top_targets"][0],
        serde_json::json!({"target": "write_note", "count": 2})
    );

    // The table: one row per agent, `(none)` last, then the totals.
    let out = run(&["audit", "stats", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "agent", "events", "allowed", "denied", "errors", "top", "targets"
        ]
    );
    assert_eq!(rows[1][..5], ["planner", "3", "2", "1", "1"], "{out:#?}");
    assert_eq!(rows[2][..5], ["researcher", "2", "2", "0", "1"], "{out:#?}");
    assert_eq!(rows[3], ["(none)", "1", "0", "1", "0", "-"], "{out:#?}");
    assert_eq!(rows[4][..5], ["total", "6", "4", "2", "2"], "{out:#?}");
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("delete_note (1), summarize (1), write_note (1)"),
        "{out:#?}"
    );

    // Filters narrow what is counted.
    let v = run(&[
        "--json",
        "audit",
        "stats",
        path(&file),
        "--since",
        "2026-11-24T00:00:00Z",
    ])
    .json();
    assert_eq!(
        counts(agent_stats(&v, &"planner".into())),
        [1, 1, 0, 1],
        "{v:#}"
    );
    assert_eq!(counts(&v["total"]), [4, 3, 1, 2], "{v:#}");
    let v = run(&[
        "--json",
        "audit",
        "stats",
        path(&file),
        "--agent",
        "researcher",
    ])
    .json();
    assert_eq!(v["agents"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(counts(&v["total"]), [2, 2, 0, 1], "{v:#}");
}

#[test]
fn audit_stats_lists_the_top_five_targets_across_files() {
    let f = Fixture::new("audit-stats-top");
    let (file, _) = mixed_audit_file(&f);
    let busy: Vec<AuditEvent> = ["t6", "t1", "t2", "t3", "t4", "t5", "t1", "t2", "t1"]
        .iter()
        .map(|t| {
            event(
                "2026-11-29T00:00:00.000Z",
                Some("planner"),
                Some("alice"),
                EventKind::ToolCall,
                Some(t),
                DecisionKind::Allow,
                EventOutcome::Success,
            )
        })
        .collect();
    let (second, _) = write_events(&f, "audit-2.jsonl", &busy);
    let v = run(&["--json", "audit", "stats", path(&file), path(&second)]).json();
    let planner = agent_stats(&v, &"planner".into());
    assert_eq!(planner["events"], 12, "{v:#}");
    let top: Vec<(&str, u64)> = planner["top_targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["target"].as_str().unwrap(), t["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        top,
        [
            ("t1", 3),
            ("t2", 2),
            ("delete_note", 1),
            ("summarize", 1),
            ("t3", 1)
        ],
        "{v:#}"
    );
}

#[test]
fn audit_tail_prints_the_last_events() {
    let f = Fixture::new("audit-tail");
    let (file, lines) = mixed_audit_file(&f);
    let out = run(&["--json", "audit", "tail", "-n", "2", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(printed_lines(&out, &lines), [4, 5], "{out:#?}");
    let out = run(&["audit", "tail", "-n", "2", "--format", "jsonl", path(&file)]);
    assert_eq!(printed_lines(&out, &lines), [4, 5], "{out:#?}");

    let out = run(&["audit", "tail", "-n", "2", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let rows = table_rows(&out);
    let times: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        times,
        ["2026-11-26T10:00:00.000Z", "2026-11-27T10:00:00Z"],
        "{out:#?}"
    );

    // Ten by default; filters apply before counting.
    let out = run(&["--json", "audit", "tail", path(&file)]);
    assert_eq!(printed_lines(&out, &lines), [0, 1, 2, 3, 4, 5], "{out:#?}");
    let out = run(&[
        "--json",
        "audit",
        "tail",
        "-n",
        "2",
        path(&file),
        "--agent",
        "planner",
    ]);
    assert_eq!(printed_lines(&out, &lines), [1, 5], "{out:#?}");
    let out = run(&["audit", "tail", "-n", "0", path(&file)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(out.stderr.contains("no matching events"), "{out:#?}");
}

/// Kills the child process when dropped, so a failing test leaves none behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An event tagged with `tag` in its `request_id`.
fn tagged(tag: &str) -> AuditEvent {
    let mut e = AuditEvent::new(
        EventKind::ToolCall,
        DecisionKind::Allow,
        EventOutcome::Success,
    );
    e.request_id = Some(tag.to_owned());
    e
}

#[test]
fn audit_tail_follow_prints_new_events_across_a_rotation() {
    use std::io::BufRead as _;
    use std::sync::mpsc;
    use std::time::Duration;

    let f = Fixture::new("audit-tail-follow");
    let file = f.dir.path().join("audit.jsonl");
    let sink = JsonLines::open(&file).unwrap();
    sink.write(&[tagged("before-1"), tagged("before-2")])
        .unwrap();

    let mut child = command(&["--json", "audit", "tail", "-f", "-n", "1", path(&file)]);
    child
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    let mut child = KillOnDrop(child.spawn().expect("the rmcp-authz binary runs"));
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The request_id of the next line printed, waiting at most 10 s for it.
    let next = || {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a line within 10 s")
            .expect("a line of text");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a whole JSON line ({e}): {line:?}"));
        v["request_id"].as_str().unwrap().to_owned()
    };

    // -n 1: the last event already there. Once it is printed, the tail is following.
    assert_eq!(next(), "before-2");

    sink.write(&[tagged("appended-1"), tagged("appended-2")])
        .unwrap();
    assert_eq!(next(), "appended-1");
    assert_eq!(next(), "appended-2");

    // A record written in two pieces is printed once, whole.
    let mut half_written = serde_json::to_string(&tagged("in-two-pieces")).unwrap();
    let rest = half_written.split_off(half_written.len() / 2);
    let mut raw = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    raw.write_all(half_written.as_bytes()).unwrap();
    raw.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    raw.write_all(format!("{rest}\n").as_bytes()).unwrap();
    assert_eq!(next(), "in-two-pieces");

    // Rotation: the file moves aside and a new one takes its path. What was written to the
    // old file just before is printed too, before anything of the new file.
    drop((sink, raw));
    let sink = JsonLines::open(&file).unwrap();
    sink.write(&[tagged("last-in-old")]).unwrap();
    drop(sink);
    std::fs::rename(&file, f.dir.path().join("audit.jsonl.1")).unwrap();
    let sink = JsonLines::open(&file).unwrap();
    sink.write(&[tagged("rotated-1"), tagged("rotated-2")])
        .unwrap();
    assert_eq!(next(), "last-in-old");
    assert_eq!(next(), "rotated-1");
    assert_eq!(next(), "rotated-2");

    sink.write(&[tagged("rotated-3")]).unwrap();
    assert_eq!(next(), "rotated-3");
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "tail -f keeps running until killed"
    );
}

// ---------------------------------------------------------------------------------------
// audit: delegation chains (--actor, stats --by, the chain column)
// ---------------------------------------------------------------------------------------

/// An event of `subject` through `client`, delegated along `chain` (current actor first;
/// empty for a direct call), whose agent is the current actor, else the client.
#[allow(clippy::too_many_arguments)]
fn delegated(
    timestamp: &str,
    subject: Option<&str>,
    client: Option<&str>,
    chain: &[&str],
    kind: EventKind,
    target: Option<&str>,
    decision: DecisionKind,
    outcome: EventOutcome,
) -> AuditEvent {
    let agent = chain.first().copied().or(client);
    let mut e = event(timestamp, agent, subject, kind, target, decision, outcome);
    e.client_id = client.map(str::to_owned);
    e.delegation_chain = chain.iter().map(|&a| a.to_owned()).collect();
    e
}

/// Nine events: direct calls 0 (alice through notes-app), 5 (bob through cli-tool) and 6
/// (no token at all); one-actor chains 1 and 8 (researcher, for alice and for nobody) and 7
/// (researcher, for bob); two-actor chains 2 and 4 (researcher <- planner, for alice); a
/// three-actor chain 3 (summarizer <- researcher <- planner, for bob). Denials 2 and 6;
/// errors 3 (protocol) and 4 (tool).
fn delegated_audit_file(f: &Fixture) -> (PathBuf, Vec<String>) {
    use DecisionKind::{Allow, Deny};
    use EventKind::{AuthenticationFailure, PromptGet, ToolCall};
    use EventOutcome::{Denied, ProtocolError, Success, ToolError};
    let planned = &["researcher", "planner"];
    let events = [
        delegated(
            "2026-11-30T09:00:00.000Z",
            Some("alice"),
            Some("notes-app"),
            &[],
            ToolCall,
            Some("list_notes"),
            Allow,
            Success,
        ),
        delegated(
            "2026-11-30T09:01:00.000Z",
            Some("alice"),
            Some("notes-app"),
            &["researcher"],
            ToolCall,
            Some("write_note"),
            Allow,
            Success,
        ),
        delegated(
            "2026-11-30T09:02:00.000Z",
            Some("alice"),
            Some("notes-app"),
            planned,
            ToolCall,
            Some("delete_note"),
            Deny,
            Denied,
        ),
        delegated(
            "2026-11-30T09:03:00.000Z",
            Some("bob"),
            Some("notes-app"),
            &["summarizer", "researcher", "planner"],
            PromptGet,
            Some("summarize"),
            Allow,
            ProtocolError,
        ),
        delegated(
            "2026-11-30T09:04:00.000Z",
            Some("alice"),
            Some("notes-app"),
            planned,
            ToolCall,
            Some("write_note"),
            Allow,
            ToolError,
        ),
        delegated(
            "2026-11-30T09:05:00.000Z",
            Some("bob"),
            Some("cli-tool"),
            &[],
            ToolCall,
            Some("list_notes"),
            Allow,
            Success,
        ),
        delegated(
            "2026-11-30T09:06:00.000Z",
            None,
            None,
            &[],
            AuthenticationFailure,
            None,
            Deny,
            Denied,
        ),
        delegated(
            "2026-11-30T09:07:00.000Z",
            Some("bob"),
            Some("notes-app"),
            &["researcher"],
            ToolCall,
            Some("list_notes"),
            Allow,
            Success,
        ),
        delegated(
            "2026-11-30T09:08:00.000Z",
            None,
            Some("notes-app"),
            &["researcher"],
            ToolCall,
            Some("list_notes"),
            Allow,
            Success,
        ),
    ];
    write_events(f, "delegated.jsonl", &events)
}

#[test]
fn audit_actor_matches_anywhere_in_the_delegation_chain() {
    let f = Fixture::new("audit-actor");
    let (file, lines) = delegated_audit_file(&f);
    let cases: &[(&[&str], &[usize])] = &[
        // planner is never the current actor: second in 2 and 4, third in 3.
        (&["--actor", "planner"], &[2, 3, 4]),
        (&["--agent", "planner"], &[]),
        // --actor researcher also finds 3, where summarizer acts for it; --agent does not.
        (&["--actor", "researcher"], &[1, 2, 3, 4, 7, 8]),
        (&["--agent", "researcher"], &[1, 2, 4, 7, 8]),
        (&["--actor", "summarizer"], &[3]),
        // A direct call has no chain: its client is an agent, not an actor.
        (&["--actor", "notes-app"], &[]),
        (&["--agent", "notes-app"], &[0]),
        // Whole names only.
        (&["--actor", "plan"], &[]),
        // With the other filters: all must hold.
        (&["--actor", "planner", "--subject", "alice"], &[2, 4]),
        (&["--actor", "planner", "--subject", "bob"], &[3]),
        (&["--actor", "planner", "--decision", "allow"], &[3, 4]),
        (&["--actor", "planner", "--tool", "write_note"], &[4]),
        (&["--actor", "researcher", "--agent", "summarizer"], &[3]),
        (&["--actor", "researcher", "--kind", "prompt_get"], &[3]),
        (&["--actor", "planner", "--outcome", "denied"], &[2]),
        (
            &["--actor", "researcher", "--since", "2026-11-30T09:03:00Z"],
            &[3, 4, 7, 8],
        ),
        (
            &["--actor", "planner", "--until", "2026-11-30T09:04:00Z"],
            &[2, 3],
        ),
        (&["--actor", "researcher", "--limit", "2"], &[1, 2]),
    ];
    for (args, expected) in cases {
        assert_query(&file, &lines, args, expected);
    }

    // stats and tail take it too.
    let v = run(&[
        "--json",
        "audit",
        "stats",
        path(&file),
        "--actor",
        "planner",
    ])
    .json();
    assert_eq!(v["total"]["events"], 3, "{v:#}");
    let agents: Vec<&Value> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["agent"])
        .collect();
    assert_eq!(agents, ["researcher", "summarizer"], "{v:#}");
    let out = run(&[
        "--json",
        "audit",
        "tail",
        "-n",
        "2",
        path(&file),
        "--actor",
        "researcher",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(printed_lines(&out, &lines), [7, 8], "{out:#?}");
    let out = run(&["--json", "audit", "tail", path(&file), "--actor", "planner"]);
    assert_eq!(printed_lines(&out, &lines), [2, 3, 4], "{out:#?}");
}

#[test]
fn audit_stats_by_chain_groups_user_via_agents() {
    let f = Fixture::new("audit-stats-chain");
    let (file, _) = delegated_audit_file(&f);
    let expected: [(&str, [u64; 4]); 8] = [
        ("alice (direct) via notes-app", [1, 1, 0, 0]),
        ("alice via researcher", [1, 1, 0, 0]),
        ("alice via researcher <- planner", [2, 1, 1, 1]),
        ("bob (direct) via cli-tool", [1, 1, 0, 0]),
        ("bob via researcher", [1, 1, 0, 0]),
        ("bob via summarizer <- researcher <- planner", [1, 1, 0, 1]),
        ("(none) (direct) via (none)", [1, 0, 1, 0]),
        ("(none) via researcher", [1, 1, 0, 0]),
    ];

    // The table: one row per group, in this order, then the totals.
    let out = run(&["audit", "stats", path(&file), "--by", "chain"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.is_empty(), "{out:#?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + expected.len() + 1, "{out:#?}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "chain", "events", "allowed", "denied", "errors", "top", "targets"
        ],
        "{out:#?}"
    );
    // The counts start where the header's `events` column does, whatever the group's name.
    let counts_at = lines[0].find("events").unwrap();
    let split = |line: &str| {
        let (group, rest) = line.split_at(counts_at);
        let cells: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
        (group.trim_end().to_owned(), cells)
    };
    for (line, (group, counts)) in lines[1..].iter().zip(&expected) {
        let (shown, cells) = split(line);
        assert_eq!(shown, *group, "{out:#?}");
        assert_eq!(cells[..4], counts.map(|c| c.to_string()), "{out:#?}");
    }
    let (total, cells) = split(lines.last().unwrap());
    assert_eq!(total, "total", "{out:#?}");
    assert_eq!(cells[..4], ["9", "7", "2", "2"], "{out:#?}");
    assert!(
        lines[3].ends_with("delete_note (1), write_note (1)"),
        "{out:#?}"
    );

    // JSON: group_by, and the groups in the same order, each with its label, the subject,
    // the chain, and for a direct call the client.
    let v = run(&["--json", "audit", "stats", path(&file), "--by", "chain"]).json();
    assert_eq!(v["group_by"], "chain", "{v:#}");
    assert!(v.get("agents").is_none(), "{v:#}");
    let groups = v["groups"].as_array().unwrap();
    let shown: Vec<(&str, [u64; 4])> = groups
        .iter()
        .map(|g| {
            let count = |k: &str| g[k].as_u64().unwrap();
            (
                g["group"].as_str().unwrap(),
                [
                    count("events"),
                    count("allowed"),
                    count("denied"),
                    count("errors"),
                ],
            )
        })
        .collect();
    assert_eq!(shown, expected, "{v:#}");
    assert_eq!(
        groups[2]["delegation_chain"],
        serde_json::json!(["researcher", "planner"]),
        "{v:#}"
    );
    assert_eq!(groups[2]["subject"], "alice", "{v:#}");
    assert!(groups[2].get("client_id").is_none(), "{v:#}");
    assert_eq!(
        groups[2]["top_targets"],
        serde_json::json!([
            {"target": "delete_note", "count": 1},
            {"target": "write_note", "count": 1},
        ]),
        "{v:#}"
    );
    assert_eq!(
        groups[3]["delegation_chain"],
        serde_json::json!([]),
        "{v:#}"
    );
    assert_eq!(groups[3]["client_id"], "cli-tool", "{v:#}");
    assert_eq!(groups[6]["subject"], Value::Null, "{v:#}");
    assert_eq!(groups[6]["client_id"], Value::Null, "{v:#}");
    assert_eq!(groups[7]["subject"], Value::Null, "{v:#}");
    assert_eq!(
        groups[7]["delegation_chain"],
        serde_json::json!(["researcher"]),
        "{v:#}"
    );
    let total = &v["total"];
    assert_eq!(
        ["events", "allowed", "denied", "errors"].map(|k| total[k].as_u64().unwrap()),
        [9, 7, 2, 2],
        "{v:#}"
    );

    // Filters narrow what is grouped.
    let v = run(&[
        "--json",
        "audit",
        "stats",
        path(&file),
        "--by",
        "chain",
        "--subject",
        "alice",
        "--actor",
        "planner",
    ])
    .json();
    let groups: Vec<&Value> = v["groups"].as_array().unwrap().iter().collect();
    assert_eq!(groups.len(), 1, "{v:#}");
    assert_eq!(
        groups[0]["group"], "alice via researcher <- planner",
        "{v:#}"
    );
    assert_eq!(groups[0]["events"], 2, "{v:#}");
}

#[test]
fn audit_stats_by_agent_is_the_default_and_by_subject_groups_users() {
    let f = Fixture::new("audit-stats-by");
    let (file, _) = delegated_audit_file(&f);
    let default = run(&["--json", "audit", "stats", path(&file)]).json();
    let by_agent = run(&["--json", "audit", "stats", path(&file), "--by", "agent"]).json();
    assert_eq!(default, by_agent);
    assert_eq!(default["group_by"], "agent", "{default:#}");
    // `agents`, as before --by existed, and `groups` hold the same.
    assert_eq!(default["agents"], default["groups"], "{default:#}");
    let groups: Vec<(&Value, &Value, &Value)> = default["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (&g["group"], &g["agent"], &g["events"]))
        .collect();
    assert_eq!(
        groups,
        [
            (&"cli-tool".into(), &"cli-tool".into(), &1.into()),
            (&"notes-app".into(), &"notes-app".into(), &1.into()),
            (&"researcher".into(), &"researcher".into(), &5.into()),
            (&"summarizer".into(), &"summarizer".into(), &1.into()),
            (&"(none)".into(), &Value::Null, &1.into()),
        ],
        "{default:#}"
    );
    let out = run(&["audit", "stats", path(&file)]);
    assert!(out.stdout.starts_with("agent "), "{out:#?}");

    let v = run(&["--json", "audit", "stats", path(&file), "--by", "subject"]).json();
    assert_eq!(v["group_by"], "subject", "{v:#}");
    assert!(v.get("agents").is_none(), "{v:#}");
    let groups: Vec<(&Value, &Value, &Value)> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (&g["group"], &g["subject"], &g["events"]))
        .collect();
    assert_eq!(
        groups,
        [
            (&"alice".into(), &"alice".into(), &4.into()),
            (&"bob".into(), &"bob".into(), &3.into()),
            (&"(none)".into(), &Value::Null, &2.into()),
        ],
        "{v:#}"
    );
    let out = run(&["audit", "stats", path(&file), "--by", "subject"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][0], "subject", "{out:#?}");
    assert_eq!(rows[1][..5], ["alice", "4", "3", "1", "1"], "{out:#?}");
    assert_eq!(rows[2][..5], ["bob", "3", "3", "0", "1"], "{out:#?}");
    assert_eq!(rows[3][..5], ["(none)", "2", "1", "1", "0"], "{out:#?}");
    assert_eq!(rows[4][..5], ["total", "9", "7", "2", "2"], "{out:#?}");

    let out = run(&["audit", "stats", path(&file), "--by", "client"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("--by"), "{out:#?}");
}

/// The header of a table `out` printed, split into its column names.
fn table_header(out: &Run) -> Vec<&str> {
    out.stdout
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no header: {out:#?}"))
        .split_whitespace()
        .collect()
}

#[test]
fn audit_query_shows_the_chain_column_only_for_delegated_events() {
    let f = Fixture::new("audit-query-chain");
    let (file, _) = delegated_audit_file(&f);
    let base = [
        "time",
        "agent",
        "subject",
        "kind",
        "target",
        "decision",
        "outcome",
        "reason_code",
    ];
    let mut with_chain = base.to_vec();
    with_chain.push("chain");

    // Some event shown has a chain: the column is there, last, `-` for direct calls.
    let out = run(&["audit", "query", path(&file), "--subject", "alice"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(table_header(&out), with_chain, "{out:#?}");
    let chains: Vec<String> = table_rows(&out)
        .iter()
        .map(|cells| cells[base.len()..].join(" "))
        .collect();
    assert_eq!(
        chains,
        [
            "-",
            "researcher",
            "researcher <- planner",
            "researcher <- planner"
        ],
        "{out:#?}"
    );
    let out = run(&["audit", "query", path(&file), "--actor", "summarizer"]);
    let rows = table_rows(&out);
    assert_eq!(
        rows[0][..3],
        ["2026-11-30T09:03:00.000Z", "summarizer", "bob"]
    );
    assert_eq!(
        rows[0][base.len()..].join(" "),
        "summarizer <- researcher <- planner",
        "{out:#?}"
    );

    // No event shown has one: the table is as it always was, though the file has chains.
    for args in [
        &["--agent", "notes-app"][..],
        &["--limit", "1"],
        &["--kind", "authentication_failure"],
        &["--actor", "planner", "--subject", "nobody", "--agent", "x"],
    ] {
        let mut cmd = vec!["audit", "query", path(&file)];
        cmd.extend_from_slice(args);
        let out = run(&cmd);
        assert_eq!(out.code, 0, "{out:#?}");
        if out.stdout.is_empty() {
            assert!(out.stderr.contains("no matching events"), "{out:#?}");
            continue;
        }
        assert_eq!(table_header(&out), base, "{args:?}: {out:#?}");
        assert!(table_rows(&out).iter().all(|r| r.len() == base.len()));
    }
    // A log without delegation never shows it.
    let (plain, _) = mixed_audit_file(&f);
    let out = run(&["audit", "query", path(&plain)]);
    assert_eq!(table_header(&out), base, "{out:#?}");

    // JSON Lines are the lines, chain or not; tail keeps its columns.
    let out = run(&["--json", "audit", "query", path(&file)]);
    assert_eq!(out.stdout, std::fs::read_to_string(&file).unwrap());
    let out = run(&["audit", "tail", "-n", "3", path(&file)]);
    assert_eq!(table_header(&out), base, "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// Cedar: policy check --tools-json, policy explain
// ---------------------------------------------------------------------------------------

#[cfg(feature = "cedar")]
const NOTES_CEDAR: &str = r#"
@id("baseline")
permit(principal, action, resource);

@id("own-folder")
forbid(principal, action == Action::"tools/call", resource == Tool::"write_note")
unless { principal has user && context.arguments.folder == principal.user };
"#;

/// What a `tools/list` of the notes server answers, as a JSON-RPC response.
#[cfg(feature = "cedar")]
fn notes_tools_json(dir: &Path) -> PathBuf {
    let object = |props: Value, required: &[&str]| serde_json::json!({ "type": "object", "properties": props, "required": required });
    let tools = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "result": { "tools": [
        { "name": "write_note", "inputSchema": object(serde_json::json!({
            "folder": { "type": "string" }, "text": { "type": "string" } }), &["folder", "text"]) },
        { "name": "list_notes", "inputSchema": object(serde_json::json!({}), &[]),
          "annotations": { "readOnlyHint": true } },
        { "name": "delete_note", "inputSchema": object(serde_json::json!({}), &[]) },
        { "name": "purge", "inputSchema": object(serde_json::json!({}), &[]) },
        { "name": "whoami", "inputSchema": object(serde_json::json!({}), &[]) },
    ]}});
    let path = dir.join("tools.json");
    std::fs::write(&path, tools.to_string()).unwrap();
    path
}

#[cfg(feature = "cedar")]
#[test]
fn policy_check_checks_cedar_policies_against_the_tool_list() {
    let f = Fixture::new("cli-cedar-check");
    let tools = notes_tools_json(f.dir.path());
    let write = |text: &str| std::fs::write(f.dir.path().join("notes.cedar"), text).unwrap();
    write(NOTES_CEDAR);
    let config = f.config(&format!(
        "{NOTES_POLICY}\n[cedar]\npolicies = \"notes.cedar\"\n"
    ));
    let clean = run(&[
        "policy",
        "check",
        "--config",
        path(&config),
        "--tools-json",
        path(&tools),
    ]);
    assert_eq!(clean.code, 0, "{clean:#?}");
    // Without the tool list, the policies are only parsed: a warning says so.
    let unchecked = run(&["--json", "policy", "check", "--config", path(&config)]);
    assert_eq!(unchecked.code, 0, "{unchecked:#?}");
    assert!(
        unchecked.stdout.contains("cedar-unchecked"),
        "{unchecked:#?}"
    );
    // An argument the tool does not have: the policy id and its line and column.
    write(&NOTES_CEDAR.replace("arguments.folder", "arguments.fodler"));
    let typo = run(&[
        "policy",
        "check",
        "--config",
        path(&config),
        "--tools-json",
        path(&tools),
    ]);
    assert_eq!(typo.code, 1, "{typo:#?}");
    assert!(
        typo.stdout.contains("error[cedar]")
            && typo.stdout.contains("notes.cedar:7:")
            && typo.stdout.contains("\"own-folder\"")
            && typo.stdout.contains("write_note"),
        "{typo:#?}"
    );
}

#[cfg(feature = "cedar")]
#[test]
fn policy_explain_decides_a_call_and_names_the_policies() {
    let f = Fixture::new("cli-cedar-explain");
    let tools = notes_tools_json(f.dir.path());
    std::fs::write(f.dir.path().join("notes.cedar"), NOTES_CEDAR).unwrap();
    let config = f.config(&format!(
        "{NOTES_POLICY}\n[cedar]\npolicies = \"notes.cedar\"\n"
    ));
    let token = f.token(&["notes:write"]);
    let explain = |arguments: &str| {
        run(&[
            "--json",
            "policy",
            "explain",
            "--config",
            path(&config),
            "--tools-json",
            path(&tools),
            "--tool",
            "write_note",
            "--arguments",
            arguments,
            &token,
        ])
    };
    let own = explain(r#"{"folder": "alice", "text": "hi"}"#);
    assert_eq!(own.code, 0, "{own:#?}");
    assert_eq!(own.json()["policies"], serde_json::json!(["baseline"]));
    let other = explain(r#"{"folder": "bob", "text": "hi"}"#);
    assert_eq!(other.code, 1, "{other:#?}");
    let out = other.json();
    assert_eq!(out["reason_code"], "forbidden_by_policy");
    assert_eq!(out["policies"], serde_json::json!(["own-folder"]));
    let wrong = explain(r#"{"folder": 3, "text": "hi"}"#);
    assert_eq!(
        wrong.json()["reason_code"],
        "invalid_arguments",
        "{wrong:#?}"
    );
    let text = run(&[
        "policy",
        "explain",
        "--config",
        path(&config),
        "--tools-json",
        path(&tools),
        "--tool",
        "write_note",
        "--arguments",
        r#"{"folder": "bob", "text": "x"}"#,
        &token,
    ]);
    assert!(
        text.stdout.contains("DENIED") && text.stdout.contains("own-folder"),
        "{text:#?}"
    );
}

/// A server with the notes tools of `notes_tools_json`, listing them to any caller with
/// `notes:write`, on a port of 127.0.0.1 (feature `cedar` with `jwks` and `http`).
#[cfg(all(feature = "cedar", feature = "jwks", feature = "http"))]
mod running {
    use std::sync::Arc;

    use rmcp::ServerHandler;
    use rmcp::model::{
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    };
    use rmcp::service::RequestContext;
    use rmcp::{ErrorData, RoleServer};

    #[derive(Debug, Clone)]
    pub(super) struct Listed(pub(super) Arc<Vec<Tool>>);

    impl ServerHandler for Listed {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }

        fn get_tool(&self, name: &str) -> Option<Tool> {
            self.0.iter().find(|t| t.name == name).cloned()
        }

        async fn list_tools(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListToolsResult, ErrorData> {
            Ok(ListToolsResult::with_all_items(self.0.to_vec()))
        }
    }
}

#[cfg(all(feature = "cedar", feature = "jwks", feature = "http"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_and_explain_ask_a_running_server_for_its_tools() {
    let f = Fixture::new("cli-cedar-server");
    let listed = notes_tools_json(f.dir.path());
    let tools: Vec<rmcp::model::Tool> = serde_json::from_value(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&listed).unwrap()).unwrap()
            ["result"]["tools"]
            .clone(),
    )
    .unwrap();
    let verifier = f.issuer.verifier(AUDIENCE).build().unwrap();
    let policy = rmcp_authz::policy::Policy::builder()
        .unlisted_tools("notes:write")
        .build()
        .unwrap();
    let authz = rmcp_authz::Authz::new(verifier, policy);
    let tools = std::sync::Arc::new(tools);
    let app = authz
        .router("/mcp", move || running::Listed(tools.clone()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        authz
            .serve(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });

    std::fs::write(f.dir.path().join("notes.cedar"), NOTES_CEDAR).unwrap();
    let config = f.config(&format!(
        "{NOTES_POLICY}\n[cedar]\npolicies = \"notes.cedar\"\n"
    ));
    let token = f.token(&["notes:write"]);
    let (config_path, url_ref, token_ref) = (config.clone(), url.clone(), token.clone());
    let runs = tokio::task::spawn_blocking(move || {
        let clean = run(&[
            "policy",
            "check",
            "--config",
            path(&config_path),
            "--server",
            &url_ref,
            "--token",
            &token_ref,
        ]);
        let explain = run(&[
            "--json",
            "policy",
            "explain",
            "--config",
            path(&config_path),
            "--server",
            &url_ref,
            "--tool",
            "write_note",
            "--arguments",
            r#"{"folder": "bob", "text": "x"}"#,
            &token_ref,
        ]);
        let refused = run(&[
            "policy",
            "check",
            "--config",
            path(&config_path),
            "--server",
            &url_ref,
            "--token",
            "not-a-token",
        ]);
        (clean, explain, refused)
    })
    .await
    .unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let (clean, explain, refused) = runs;
    assert_eq!(clean.code, 0, "{clean:#?}");
    assert_eq!(explain.code, 1, "{explain:#?}");
    assert_eq!(
        explain.json()["policies"],
        serde_json::json!(["own-folder"])
    );
    // A server that refuses the token: the command cannot run, and says why.
    assert_eq!(refused.code, 2, "{refused:#?}");
    assert!(refused.stderr.contains("401"), "{refused:#?}");
}
