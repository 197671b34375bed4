//! The configuration's unit tests: each section's values checked with their key and line,
//! rules and conditions, the audit log started from a file.

use std::path::Path;
use std::time::Duration;

use super::*;

fn load(policy: &str) -> Result<Config, ConfigFileError> {
    let dir = tempfile::tempdir().unwrap();
    let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
    std::fs::write(dir.path().join("jwks.json"), issuer.jwks().to_string()).unwrap();
    let text = format!(
        "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs/mcp\"\njwks_file = \"jwks.json\"\n\n{policy}"
    );
    Config::from_toml(&text, dir.path())
}

#[test]
fn rules_load_as_strings_or_tables() {
    let config = load(
        "[policy.tools]\na = \"x | y z\"\nb = { requires = \"x\", clients = [\"c1\"] }\nc = \"\"\n",
    )
    .unwrap();
    let p = config.policy();
    use crate::policy::Operation::CallTool;
    assert!(
        p.decide_for(&["x".into()], None, CallTool("a"))
            .is_allowed()
    );
    assert!(
        !p.decide_for(&["x".into()], Some("c2"), CallTool("b"))
            .is_allowed()
    );
    assert!(
        p.decide_for(&["x".into()], Some("c1"), CallTool("b"))
            .is_allowed()
    );
    assert!(p.decide_for(&[], None, CallTool("c")).is_allowed());
}

#[test]
fn unknown_keys_are_errors_naming_the_key_and_line() {
    let err = load("[policy]\nimplies = {}\ntolls = {}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("tolls") && err.contains("line 8"), "{err}");
    let err = load("[policy.tools]\na = { requires = \"x\", client = [\"c\"] }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("client"), "{err}");
}

#[test]
fn bad_expressions_name_the_rule_and_line() {
    let err = load("[policy.tools]\nok = \"x\"\npurge = \"a (b\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("policy.tools.\"purge\" (line 8)"), "{err}");
}

#[test]
fn verifier_values_are_checked_with_their_key() {
    let dir = std::env::temp_dir();
    for (line, key) in [
        ("leeway_secs = 301", "verifier.leeway_secs"),
        ("typ = \"loose\"", "verifier.typ"),
        ("algorithms = [\"RS1\"]", "verifier.algorithms"),
        (
            "jwks_file = \"/nonexistent/jwks.json\"",
            "verifier.jwks_file",
        ),
        (
            "hmac_secret_env = \"RMCP_AUTHZ_UNSET_VARIABLE_FOR_TEST\"",
            "verifier.hmac_secret_env",
        ),
    ] {
        let text =
            format!("[verifier]\nissuer = \"https://as\"\naudience = \"https://rs\"\n{line}\n");
        let err = Config::from_toml(&text, &dir).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{key} (line 4)")), "{err}");
    }
}

#[test]
fn missing_issuer_is_a_syntax_error_naming_it() {
    let err = Config::from_toml("[verifier]\naudience = \"x\"\n", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("issuer"), "{err}");
}

#[test]
fn audit_values_are_checked_with_their_key() {
    for (line, key) in [
        ("durability = \"fast\"", "audit.durability"),
        ("overload = \"drop\"", "audit.overload"),
        ("queue_capacity = 0", "audit.queue_capacity"),
        ("flush_interval_ms = 0", "audit.flush_interval_ms"),
        (
            "hmac_key_env = \"RMCP_AUTHZ_UNSET_VARIABLE_FOR_TEST\"",
            "audit.hmac_key_env",
        ),
    ] {
        let err = load(&format!("[audit]\nfile = \"audit.jsonl\"\n{line}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{key} (line 8)")), "{err}");
    }
    let err = load("[audit]\ndurable = true\n").unwrap_err().to_string();
    assert!(err.contains("durable"), "{err}");
    let err = load("[audit]\nfail_closed = true\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("name a `file`"), "{err}");
}

/// An `[audit]` section that records nowhere names the section's line.
#[test]
fn an_audit_section_without_a_sink_names_its_line() {
    let err = load("[audit]\nfail_closed = true\n").unwrap_err();
    assert!(matches!(&err, ConfigFileError::Invalid { key, line: 6, .. } if key == "audit"));
    assert_eq!(
        err.to_string(),
        "audit (line 6): name a `file`, or an [audit.postgres] database, or set `tracing = true` (or several)"
    );
}

/// Each error keeps the error it comes from: the TOML parser's, an unknown name's, a key's.
#[test]
fn errors_keep_their_source() {
    use std::error::Error as _;
    let err = load("[policy]\ntolls = {}\n").unwrap_err();
    assert!(matches!(err, ConfigFileError::Syntax { file: None, .. }));
    let source = err.source().expect("the TOML error");
    assert!(source.is::<toml::de::Error>());
    assert!(err.to_string().contains("line 7, column 1"), "{err}");
    let err = load("[audit]\nfile = \"a.jsonl\"\noverload = \"drop\"\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit.overload (line 8): \"drop\": use \"block\" or \"refuse\""
    );
    assert!(err.source().is_some());
    let err = load("[policy.tools]\nx = \"a (\"\n").unwrap_err();
    assert!(err.source().unwrap().is::<crate::policy::ExprError>());
}

#[test]
fn an_audit_section_starts_a_working_audit_log() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
    std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string()).unwrap();
    let text = "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs/mcp\"\njwks_file = \"jwks.json\"\n\n[audit]\nfile = \"audit.jsonl\"\ndurability = \"durable\"\nfail_closed = true\nrecord_arguments = true\nredact = [\"password\"]\n";
    let config = Config::from_toml(text, dir).unwrap();
    assert_eq!(
        config.audit().unwrap().file(),
        Some(dir.join("audit.jsonl").as_path())
    );
    let authz = config.into_authz().unwrap();
    let auditor = authz.auditor().expect("an auditor");
    assert!(auditor.is_fail_closed());
    assert!(auditor.arguments().records_clear());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let slot = auditor.reserve().await.unwrap();
        let event = crate::audit::AuditEvent::new(
            crate::audit::EventKind::List,
            crate::audit::DecisionKind::Allow,
            crate::audit::Outcome::Success,
        );
        slot.record(event).await.unwrap();
    });
    let report = crate::audit::verify_chain(&[dir.join("audit.jsonl")]).unwrap();
    assert_eq!(report.records, 1);
}

#[tokio::test]
async fn the_write_delay_reaches_the_auditor() {
    for (line, delay) in [
        ("", crate::audit::DEFAULT_WRITE_DELAY),
        ("write_delay_ms = 20\n", Duration::from_millis(20)),
        ("write_delay_ms = 0\n", Duration::ZERO),
    ] {
        let config = load(&format!("[audit]\ntracing = true\n{line}")).unwrap();
        let auditor = config.audit().unwrap().start().unwrap();
        assert_eq!(auditor.write_delay(), delay, "{line}");
        auditor.close().await;
    }
}

#[test]
fn an_unopenable_audit_file_is_a_clear_error() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let text = format!(
        "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs\"\njwks_file = {:?}\n[audit]\nfile = \"/nonexistent/dir/audit.jsonl\"\n",
        jwks.display().to_string()
    );
    let err = Config::from_toml(&text, dir)
        .unwrap()
        .into_authz()
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("[audit]: audit file /nonexistent/dir/audit.jsonl"),
        "{err}"
    );
}

#[test]
fn rules_carry_delegation_and_freshness_conditions() {
    use crate::policy::DenyReason;
    let config = load(
        "[policy]\nmax_token_lifetime_secs = 7200\n[policy.defaults]\nmax_chain_depth = 1\n[policy.tools]\npurge = { requires = \"a\", user_only = true, max_token_age_secs = 60 }\nwrite = { requires = \"a\", agents = [\"bot\"], max_chain_depth = 2, forbid_actors = [\"rogue\"], actor_issuers = [\"https://as\"] }\n",
    )
    .unwrap();
    let p = config.policy();
    let purge = p
        .rule_for(crate::policy::Operation::CallTool("purge"))
        .unwrap();
    assert_eq!(
        *purge.conditions(),
        crate::policy::Conditions::new()
            .user_only()
            .max_token_age(Duration::from_secs(60))
    );
    let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
    let token = issuer
        .token("https://rs/mcp")
        .subject("u")
        .scopes(["a"])
        .actor("bot")
        .actor("planner")
        .mint()
        .unwrap();
    let who = issuer
        .verifier("https://rs/mcp")
        .build()
        .unwrap()
        .verify_sync(&token)
        .unwrap();
    let now = who.issued_at().unwrap();
    let reason = |tool| {
        p.decide_at(&who, crate::policy::Operation::CallTool(tool), now)
            .denial()
            .map(|d| d.reason().clone())
    };
    assert!(matches!(
        reason("purge"),
        Some(DenyReason::DelegationNotAllowed { .. })
    ));
    assert_eq!(
        reason("write"),
        None,
        "the rule's depth 2 overrides the default 1"
    );
    let err = load("[policy.tools]\nx = { requires = \"a\", user_ony = true }\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("user_ony") && err.contains("user_only"),
        "{err}"
    );
    let err = load("[policy.defaults]\nagnets = []\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("agnets"), "{err}");
}

#[cfg(feature = "jwks")]
mod jwks {
    use super::*;

    #[test]
    fn a_jwks_uri_takes_the_keys_from_the_issuer() {
        let base = "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs\"\n";
        let config = Config::from_toml(
            &format!("{base}jwks_uri = \"https://as/jwks\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(config.verifier().remote_url(), Some("https://as/jwks"));
        let err = Config::from_toml(
            &format!("{base}jwks_uri = \"http://127.0.0.1:9/jwks\"\n"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("verifier.jwks_uri (line 4)") && err.contains("https"),
            "{err}"
        );
        let config = Config::from_toml(
            &format!("{base}jwks_uri = \"http://127.0.0.1:9/jwks\"\nallow_http_loopback = true\n"),
            Path::new("."),
        )
        .unwrap();
        assert!(config.verifier().remote_url().is_some());
    }

    /// A JWK Set file that exists and loads, beside a `jwks_uri`: refused as two key
    /// sources (not for a missing file, which would hide the check).
    #[test]
    fn a_jwks_uri_beside_a_jwks_file_is_refused_as_two_sources() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let jwks = crate::dev::DevIssuer::new("https://as").unwrap().jwks();
        std::fs::write(dir.join("keys.json"), jwks.to_string()).unwrap();
        let base = "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs\"\n";
        let only_file = format!("{base}jwks_file = \"keys.json\"\n");
        let loaded = Config::from_toml(&only_file, dir);
        assert!(loaded.is_ok(), "the file alone loads: {:?}", loaded.err());
        let err = Config::from_toml(
            &format!("{base}jwks_uri = \"https://as/jwks\"\njwks_file = \"keys.json\"\n"),
            dir,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("one source"), "{err}");
    }
}

#[cfg(feature = "cedar")]
#[test]
fn cedar_policies_load_from_files_relative_to_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = crate::dev::DevIssuer::new("https://as").unwrap();
    std::fs::write(dir.path().join("jwks.json"), issuer.jwks().to_string()).unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "@id(\"base\") permit(principal, action, resource);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.cedar"),
        "forbid(principal, action, resource)\nwhen { 1 + };",
    )
    .unwrap();
    let with = |cedar: &str| {
        let text = format!(
            "[verifier]\nissuer = \"https://as\"\naudience = \"https://rs/mcp\"\njwks_file = \"jwks.json\"\n\n[cedar]\n{cedar}"
        );
        Config::from_toml(&text, dir.path())
    };
    let config = with("policies = \"a.cedar\"\nclaims = { tenant = \"string\" }\n").unwrap();
    assert_eq!(config.cedar().unwrap().ids().collect::<Vec<_>>(), ["base"]);
    let err = with("policies = [\"a.cedar\", \"b.cedar\"]\n").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cedar.policies (line 7)") && text.contains("b.cedar:2:"),
        "{text}"
    );
    let err = with("policies = \"a.cedar\"\nclaims = { tenant = \"text\" }\n").unwrap_err();
    assert!(
        err.to_string().contains("cedar.claims.tenant (line 8)"),
        "{err}"
    );
    let err = with("policies = []\n").unwrap_err();
    assert!(err.to_string().contains("at least one"), "{err}");
}

#[cfg(feature = "dpop")]
#[test]
fn a_dpop_section_sets_the_proof_checks_and_rules_require_dpop() {
    let config = load(
        "[dpop]\nrequired = true\nalgorithms = [\"ES256\"]\nnonce_lifetime_secs = 30\n\n[policy.tools]\na = { requires = \"x\", require_dpop = \"delegated\" }\n",
    )
    .unwrap();
    assert_eq!(config.dpop_required(), Some(true));
    let dpop = config.dpop.as_ref().unwrap();
    assert!(dpop.verifier.requires_nonce());
    assert_eq!(dpop.verifier.options().algorithm_names(), "ES256");
    // A delegated bearer token is refused by the rule; the user's own is not.
    let principal = |actor: bool| {
        let mut b = crate::Principal::builder("https://as", i64::MAX).scopes(["x"]);
        if actor {
            b = b.actor(crate::Actor::new(Some("agent".into()), None, None).unwrap());
        }
        b.build().unwrap()
    };
    let decide = |p| {
        config
            .policy()
            .decide(&p, crate::policy::Operation::CallTool("a"))
    };
    assert_eq!(
        decide(principal(true)).denial().map(|d| d.code()),
        Some("dpop_required")
    );
    assert!(decide(principal(false)).is_allowed());

    for (section, key, says) in [
        (
            "[dpop]\nalgorithms = [\"HS256\"]\n",
            "dpop.algorithms",
            "asymmetric",
        ),
        (
            "[dpop]\nalgorithms = []\n",
            "dpop.algorithms",
            "at least one",
        ),
        ("[dpop]\nwindow_secs = 0\n", "dpop.window_secs", "1 to 3600"),
        (
            "[dpop]\nnonce_secret_env = \"RMCP_AUTHZ_TEST_UNSET_VAR\"\n",
            "dpop.nonce_secret_env",
            "without nonce_lifetime_secs",
        ),
        (
            "[dpop]\nnonce_lifetime_secs = 5\nnonce_secret_env = \"RMCP_AUTHZ_TEST_UNSET_VAR\"\n",
            "dpop.nonce_secret_env",
            "not set",
        ),
        ("[dpop]\nrequird = true\n", "requird", "unknown field"),
        (
            "[policy.tools]\na = { requires = \"x\", require_dpop = \"sometimes\" }\n",
            "sometimes",
            "always",
        ),
    ] {
        let err = load(section).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(says), "{section}: {err}");
    }
}
