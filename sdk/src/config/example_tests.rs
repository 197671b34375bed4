//! `docs/rmcp-authz.example.toml` seen through the policy's own views of its rules and its
//! hierarchy (`Policy::rules`, `Policy::implied_by`), which the crate keeps to itself for
//! `rmcp-authz policy show`: so these two checks live here, and `tests/config_example.rs`
//! checks the rest of the example through the public API.

use std::path::Path;

use super::Config;
use crate::dev::DevIssuer;
use crate::policy::{Operation, Policy, Rule, ScopeExpr, all_of, any_of};

const ISSUER: &str = "https://auth.example.com";

/// A temporary directory holding `jwks.json`, which the example names.
struct Example {
    dir: tempfile::TempDir,
}

impl Example {
    fn new(name: &str) -> Example {
        let dir = tempfile::TempDir::with_prefix(name).unwrap();
        let issuer = DevIssuer::new(ISSUER).unwrap();
        std::fs::write(dir.path().join("jwks.json"), issuer.jwks().to_string()).unwrap();
        Example { dir }
    }

    /// The example, loaded as if it were in this directory.
    fn load(&self) -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rmcp-authz.example.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Config::from_toml(&text, self.dir.path())
            .unwrap_or_else(|e| panic!("the example loads: {e}"))
    }
}

#[test]
fn the_example_lists_the_notes_tools_and_scopes() {
    let ex = Example::new("names");
    let config = ex.load();
    let p = config.policy();
    assert_eq!(
        p.tool_names().collect::<Vec<_>>(),
        [
            "delete_note",
            "list_notes",
            "purge",
            "read_note",
            "whoami",
            "write_note"
        ]
    );
    assert_eq!(
        p.scopes_supported(),
        [
            "notes:admin",
            "notes:delete",
            "notes:read",
            "notes:write",
            "ops:purge"
        ]
    );
    assert_eq!(
        p.implied_by("notes:admin"),
        ["notes:write", "notes:delete", "notes:read"]
    );
}

/// `docs/config.md`: a configuration file builds the same policy as the builder.
#[test]
fn the_example_equals_its_builder_form() {
    let ex = Example::new("builder");
    let config = ex.load();
    let built = Policy::builder()
        .implies("notes:admin", ["notes:write", "notes:delete"])
        .implies("notes:write", ["notes:read"])
        .tool("list_notes", "notes:read")
        .tool("read_note", "notes:read")
        .tool("write_note", "notes:write")
        .tool("delete_note", "notes:delete")
        .tool(
            "purge",
            Rule::new(all_of(["notes:admin", "ops:purge"])).only_clients(["admin-console"]),
        )
        .tool("whoami", ScopeExpr::authenticated())
        .resource("notes://index", ScopeExpr::authenticated())
        .resource("notes://{id}", "notes:read")
        .prompt("summarize", "notes:read")
        .prompt("audit_report", "notes:admin")
        .build()
        .unwrap();
    let from_file = config.policy();
    let rules = |p: &Policy| -> Vec<(String, String, Rule)> {
        p.rules()
            .into_iter()
            .map(|(k, n, r)| (k.to_owned(), n.to_owned(), r.clone()))
            .collect()
    };
    assert_eq!(rules(from_file), rules(&built));
    assert_eq!(from_file.scopes_supported(), built.scopes_supported());
    for scope in built.scopes_supported() {
        assert_eq!(
            from_file.implied_by(scope),
            built.implied_by(scope),
            "{scope}"
        );
    }
    // And they decide alike for every mix of the scopes they mention, from both clients.
    let scopes = built.scopes_supported();
    for mask in 0..(1u32 << scopes.len()) {
        let granted: Vec<String> = (0..scopes.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| scopes[i].clone())
            .collect();
        for client in ["admin-console", "notes-app"] {
            for op in [
                Operation::CallTool("list_notes"),
                Operation::CallTool("read_note"),
                Operation::CallTool("write_note"),
                Operation::CallTool("delete_note"),
                Operation::CallTool("purge"),
                Operation::CallTool("whoami"),
                Operation::ReadResource("notes://index"),
                Operation::ReadResource("notes://7"),
                Operation::GetPrompt("summarize"),
                Operation::GetPrompt("audit_report"),
            ] {
                assert_eq!(
                    from_file.decide_for(&granted, Some(client), op),
                    built.decide_for(&granted, Some(client), op),
                    "{op} for {client} with {granted:?}"
                );
            }
        }
    }
    // The text form of an alternative parses to the builder's any_of.
    assert_eq!(
        ScopeExpr::parse("notes:write | notes:admin").unwrap(),
        any_of(["notes:write", "notes:admin"])
    );
}
