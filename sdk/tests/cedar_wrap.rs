//! How `Authz` takes Cedar policies (feature `cedar`): they are checked against the first
//! handler wrapped, a second handler whose tools differ is refused, and problems stop the
//! wrap with every one of them.

#![cfg(feature = "cedar")]

use std::sync::Arc;

use rmcp::ServerHandler;
use rmcp::model::{ServerCapabilities, ServerConfig, Tool, ToolAnnotations};
use rmcp_authz::Authz;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::policy::cedar::CedarError;
use rmcp_authz::policy::cedar::CedarPolicies;
use rmcp_authz::policy::{Operation, Policy};
use serde_json::json;

/// A handler with one tool, `write_note(folder)`, read-only or not.
#[derive(Debug)]
struct Notes<const READ_ONLY: bool>;

impl<const READ_ONLY: bool> ServerHandler for Notes<READ_ONLY> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let schema = json!({"type": "object", "required": ["folder"],
                            "properties": {"folder": {"type": "string"}}});
        (name == "write_note").then(|| {
            Tool::new(
                "write_note",
                "",
                Arc::new(schema.as_object().cloned().unwrap()),
            )
            .annotate(ToolAnnotations::new().read_only(READ_ONLY))
        })
    }
}

fn authz(text: &str) -> Authz {
    let issuer = DevIssuer::new("https://as").unwrap();
    let verifier = issuer.verifier("https://rs/mcp").build().unwrap();
    let policy = Policy::builder()
        .tool("write_note", "notes:write")
        .build()
        .unwrap();
    Authz::builder(verifier, policy)
        .cedar(CedarPolicies::parse("notes.cedar", text).unwrap())
        .build()
}

const POLICIES: &str = r#"
@id("all") permit(principal, action, resource);
@id("read-only-when-delegated")
forbid(principal, action == Action::"tools/call", resource)
when { principal.delegated } unless { resource.readOnlyHint };
"#;

#[test]
fn policies_compile_against_the_first_handler_and_a_different_one_is_refused() {
    let authz = authz(POLICIES);
    assert!(
        authz.cedar().is_none(),
        "nothing compiled before a handler is wrapped"
    );
    authz.wrap(Notes::<false>).expect("the first handler");
    let cedar = authz.cedar().expect("compiled");
    assert!(cedar.governs(Operation::CallTool("write_note")));
    // The same type again: fine. Another type whose tool has other annotations: refused,
    // as the policies would decide its calls with the first one's.
    authz.wrap(Notes::<false>).expect("the same handler type");
    let err = authz.wrap(Notes::<true>).unwrap_err();
    assert!(
        matches!(err, rmcp_authz::ConfigError::Cedar(CedarError::ToolChanged { ref tool }) if tool == "write_note"),
        "{err}"
    );
}

#[test]
fn every_problem_stops_the_wrap_with_its_position() {
    let text = "@id(\"a\") permit(principal, action, resource == Tool::\"write_note\") when { context.arguments.fodler == \"x\" };\n\
                @id(\"b\") permit(principal, action, resource == Tool::\"write_note\") when { context.arguments.folder == 3 };";
    let err = authz(text).wrap(Notes::<false>).unwrap_err();
    let rmcp_authz::ConfigError::Cedar(CedarError::Invalid(problems)) = &err else {
        panic!("{err}")
    };
    let found: Vec<(&str, usize)> = problems
        .iter()
        .map(|p| (p.policy.as_str(), p.position.line))
        .collect();
    assert_eq!(found, [("a", 1), ("b", 2)], "{err}");
}
