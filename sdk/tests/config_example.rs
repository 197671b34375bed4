//! `docs/rmcp-authz.example.toml` loads, and decides as its comments and `docs/config.md`
//! say.
//!
//! The example is copied into a temporary directory next to a `jwks.json` written from a
//! [`DevIssuer`] (the example names `jwks_file = "jwks.json"`, relative to the file), loaded
//! with [`Config::from_file`], and asked about tokens minted by that issuer. Changing the
//! example without keeping it true breaks this test, so the documented example cannot rot.
//! Two checks that need the policy's crate-private views of its rules and hierarchy (the
//! example's hierarchy, and its equality with its builder form) are unit tests in
//! `sdk/src/config/example_tests.rs`.

use std::path::{Path, PathBuf};

use rmcp_authz::config::Config;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::{Decision, DenyReason, Operation, Policy};
use rmcp_authz::token::{Algorithm, AuthError};
use rmcp_authz::{Authz, Principal};

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://mcp.example.com/mcp";

fn example_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rmcp-authz.example.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A temporary directory holding the example (as `rmcp-authz.toml`) and `jwks.json`.
struct Example {
    dir: tempfile::TempDir,
    issuer: DevIssuer,
}

impl Example {
    /// The example as it is.
    fn new(name: &str) -> Example {
        Example::with_text(name, &example_text())
    }

    /// The example, edited.
    fn with_text(name: &str, text: &str) -> Example {
        let dir = tempfile::TempDir::with_prefix(name).unwrap();
        let issuer = DevIssuer::new(ISSUER).unwrap();
        std::fs::write(dir.path().join("jwks.json"), issuer.jwks().to_string()).unwrap();
        std::fs::write(dir.path().join("rmcp-authz.toml"), text).unwrap();
        Example { dir, issuer }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("rmcp-authz.toml")
    }

    fn load(&self) -> Config {
        Config::from_file(self.path()).unwrap_or_else(|e| panic!("the example loads: {e}"))
    }

    /// A verified caller: `client` with `scopes`, for user alice.
    fn who(&self, config: &Config, client: &str, scopes: &[&str]) -> Principal {
        let token = self
            .issuer
            .token(AUDIENCE)
            .subject("alice")
            .client_id(client)
            .scopes(scopes)
            .mint()
            .unwrap();
        config.verifier().verify_sync(&token).unwrap()
    }
}

fn allowed(policy: &Policy, who: &Principal, op: Operation<'_>) -> bool {
    policy.decide(who, op).is_allowed()
}

fn missing(decision: &Decision) -> Vec<String> {
    match decision.denial().map(|d| d.reason()) {
        Some(DenyReason::InsufficientScope { missing, .. }) => missing.clone(),
        other => panic!("expected a missing-scope denial, got {other:?}"),
    }
}

#[test]
fn the_example_loads_with_the_documented_verifier_settings() {
    let ex = Example::new("verifier");
    let config = ex.load();
    let v = config.verifier();
    assert_eq!(v.issuer(), ISSUER);
    assert_eq!(v.audience(), AUDIENCE);
    assert_eq!(v.algorithms(), [Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(v.keys().len(), 1, "the one key of jwks.json");
    assert!(v.keys().get(ex.issuer.kid()).is_some());
}

#[test]
fn tokens_from_the_issuer_verify() {
    let ex = Example::new("tokens");
    let config = ex.load();
    let v = config.verifier();

    let token = ex
        .issuer
        .token(AUDIENCE)
        .subject("alice")
        .client_id("notes-app")
        .scopes(["notes:write"])
        .actor("research-agent")
        .mint()
        .unwrap();
    let who = v.verify_sync(&token).unwrap();
    assert_eq!(who.subject(), Some("alice"));
    assert_eq!(who.client_id(), Some("notes-app"));
    assert_eq!(who.agent(), Some("research-agent"));
    assert_eq!(who.scopes(), ["notes:write"]);

    // typ = "strict": a token typed "JWT" (an ID token, say) is refused.
    let untyped = ex.issuer.token(AUDIENCE).typ(Some("JWT")).mint().unwrap();
    assert!(matches!(
        v.verify_sync(&untyped),
        Err(AuthError::WrongType { .. })
    ));
    // The audience is this server only.
    let elsewhere = ex
        .issuer
        .token("https://other.example.com/mcp")
        .mint()
        .unwrap();
    assert!(matches!(
        v.verify_sync(&elsewhere),
        Err(AuthError::WrongAudience { .. })
    ));
    // required_claims = ["sub"].
    let anonymous = ex.issuer.token(AUDIENCE).without("sub").mint().unwrap();
    assert!(v.verify_sync(&anonymous).is_err());
    // Another key with the same issuer name is not trusted.
    let forger = DevIssuer::new(ISSUER).unwrap();
    let forged = forger.token(AUDIENCE).mint().unwrap();
    assert!(v.verify_sync(&forged).is_err());
}

#[test]
fn notes_read_reads_and_nothing_more() {
    let ex = Example::new("read");
    let config = ex.load();
    let p = config.policy();
    let who = ex.who(&config, "notes-app", &["notes:read"]);
    assert!(allowed(p, &who, Operation::CallTool("list_notes")));
    assert!(allowed(p, &who, Operation::CallTool("read_note")));
    assert!(allowed(p, &who, Operation::ReadResource("notes://42")));
    assert!(allowed(p, &who, Operation::GetPrompt("summarize")));
    assert_eq!(
        missing(&p.decide(&who, Operation::CallTool("write_note"))),
        ["notes:write"]
    );
    assert_eq!(
        missing(&p.decide(&who, Operation::CallTool("delete_note"))),
        ["notes:delete"]
    );
    assert_eq!(
        missing(&p.decide(&who, Operation::GetPrompt("audit_report"))),
        ["notes:admin"]
    );
}

#[test]
fn notes_write_implies_read_but_not_delete_or_purge() {
    let ex = Example::new("write");
    let config = ex.load();
    let p = config.policy();
    let who = ex.who(&config, "notes-app", &["notes:write"]);
    assert!(allowed(p, &who, Operation::CallTool("write_note")));
    assert!(allowed(p, &who, Operation::CallTool("list_notes")));
    assert!(allowed(p, &who, Operation::CallTool("read_note")));
    assert!(allowed(p, &who, Operation::ReadResource("notes://42")));
    assert!(!allowed(p, &who, Operation::CallTool("delete_note")));
    assert!(!allowed(p, &who, Operation::CallTool("purge")));
}

#[test]
fn notes_admin_implies_write_delete_and_read() {
    let ex = Example::new("admin");
    let config = ex.load();
    let p = config.policy();
    let who = ex.who(&config, "notes-app", &["notes:admin"]);
    for tool in ["list_notes", "read_note", "write_note", "delete_note"] {
        assert!(allowed(p, &who, Operation::CallTool(tool)), "{tool}");
    }
    assert!(allowed(p, &who, Operation::GetPrompt("audit_report")));
    assert!(allowed(p, &who, Operation::GetPrompt("summarize")));
}

#[test]
fn purge_needs_both_scopes_and_the_admin_console() {
    let ex = Example::new("purge");
    let config = ex.load();
    let p = config.policy();

    let console = ex.who(&config, "admin-console", &["notes:admin", "ops:purge"]);
    assert!(allowed(p, &console, Operation::CallTool("purge")));

    let half = ex.who(&config, "admin-console", &["notes:admin"]);
    let decision = p.decide(&half, Operation::CallTool("purge"));
    assert_eq!(missing(&decision), ["ops:purge"]);
    assert_eq!(
        decision.denial().unwrap().challenge_scope().as_deref(),
        Some("notes:admin ops:purge")
    );

    let other_client = ex.who(&config, "notes-app", &["notes:admin", "ops:purge"]);
    let decision = p.decide(&other_client, Operation::CallTool("purge"));
    assert_eq!(
        decision.denial().map(|d| d.reason().clone()),
        Some(DenyReason::ClientNotPermitted {
            client: Some("notes-app".to_owned())
        })
    );
}

#[test]
fn whoami_and_the_index_need_no_scope() {
    let ex = Example::new("no-scope");
    let config = ex.load();
    let p = config.policy();
    let nobody = ex.who(&config, "notes-app", &[]);
    assert!(allowed(p, &nobody, Operation::CallTool("whoami")));
    assert!(allowed(
        p,
        &nobody,
        Operation::ReadResource("notes://index")
    ));
    assert!(allowed(p, &nobody, Operation::Basic));
    assert_eq!(
        missing(&p.decide(&nobody, Operation::ReadResource("notes://42"))),
        ["notes:read"]
    );
    assert!(!allowed(p, &nobody, Operation::CallTool("list_notes")));
}

#[test]
fn anything_unnamed_is_denied() {
    let ex = Example::new("unnamed");
    let config = ex.load();
    let p = config.policy();
    let admin = ex.who(&config, "admin-console", &["notes:admin", "ops:purge"]);
    for op in [
        Operation::CallTool("export"),
        Operation::GetPrompt("other"),
        Operation::ReadResource("files://etc/passwd"),
        Operation::Custom("notes/export"),
    ] {
        let decision = p.decide(&admin, op);
        assert_eq!(
            decision.denial().map(|d| d.reason().clone()),
            Some(DenyReason::NoRule),
            "{op}"
        );
    }
}

/// `Authz::from_config_file(path)` is the one call the docs promise.
#[tokio::test]
async fn authz_loads_from_the_example_in_one_call() {
    let ex = Example::new("authz");
    let authz = Authz::from_config_file(ex.path()).unwrap();
    assert_eq!(authz.resource(), AUDIENCE);
    assert_eq!(authz.authorization_servers(), [ISSUER]);
    let token = ex
        .issuer
        .token(AUDIENCE)
        .subject("alice")
        .scopes(["notes:write"])
        .mint()
        .unwrap();
    let who = authz.verifier().verify(&token).await.unwrap();
    assert!(
        authz
            .policy()
            .decide(&who, Operation::CallTool("write_note"))
            .is_allowed()
    );
    assert!(
        !authz
            .policy()
            .decide(&who, Operation::CallTool("purge"))
            .is_allowed()
    );
}

/// The commented-out `unlisted_*` and `custom_requests` keys are valid where they stand:
/// uncommented, the file still loads and they take effect.
#[test]
fn the_commented_policy_keys_work_uncommented() {
    let text = example_text();
    let mut edited = text.clone();
    for key in [
        "unlisted_tools = ",
        "unlisted_resources = ",
        "unlisted_prompts = ",
        "[policy.custom_requests]",
        "\"notes/export\" = ",
    ] {
        let commented = format!("\n# {key}");
        assert!(edited.contains(&commented), "the example shows {key:?}");
        edited = edited.replacen(&commented, &format!("\n{key}"), 1);
    }
    let ex = Example::with_text("uncommented", &edited);
    let config = ex.load();
    let p = config.policy();
    let reader = ex.who(&config, "notes-app", &["notes:read"]);
    let admin = ex.who(&config, "notes-app", &["notes:admin"]);
    assert!(!allowed(p, &reader, Operation::CallTool("export")));
    assert!(allowed(p, &admin, Operation::CallTool("export")));
    assert!(allowed(p, &reader, Operation::ReadResource("files://a")));
    assert!(allowed(p, &reader, Operation::GetPrompt("other")));
    assert!(allowed(p, &reader, Operation::Custom("notes/export")));
    // Named rules still win over the unlisted ones.
    assert!(!allowed(p, &reader, Operation::CallTool("write_note")));
}

/// The error messages `docs/config.md` quotes for mistakes in the example file are the
/// ones loading it really gives, line numbers included.
#[test]
fn the_documented_errors_are_the_real_ones() {
    let docs_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let docs = std::fs::read_to_string(&docs_path).unwrap();
    let text = example_text();
    for (from, to) in [
        ("\nleeway_secs = 30\n", "\nleway_secs = 30\n"),
        (
            "\ndelete_note = \"notes:delete\"\n",
            "\ndelete_note = \"notes:delete |\"\n",
        ),
        ("\ntyp = \"strict\"\n", "\ntyp = \"loose\"\n"),
    ] {
        assert!(text.contains(from), "the example has {from:?}");
        let ex = Example::with_text("errors", &text.replacen(from, to, 1));
        let err = Config::from_file(ex.path()).unwrap_err().to_string();
        // Syntax errors start with the file's path; the docs show it as rmcp-authz.toml.
        let err = err.replace(&ex.path().display().to_string(), "rmcp-authz.toml");
        for line in err.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            assert!(
                docs.contains(line),
                "docs/config.md should quote {line:?} (the error for {to:?})"
            );
        }
    }
}
