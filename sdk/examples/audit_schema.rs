//! Prints the JSON Schema of `rmcp_authz::audit::AuditEvent`; the committed copy is
//! `docs/audit-event.schema.json`, and a test fails when the two differ.
//!
//! Run with:
//!
//! ```sh
//! cargo run -p rmcp-authz --example audit_schema > docs/audit-event.schema.json
//! ```

fn main() {
    let schema = rmcp_authz::audit::AuditEvent::json_schema();
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_else(|_| schema.to_string())
    );
}
