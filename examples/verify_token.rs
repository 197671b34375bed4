//! Mint access tokens with the development issuer and verify them, printing what a
//! resource server decides for each.
//!
//! Run with:
//!
//! ```sh
//! cargo run -p rmcp-authz-examples --example verify_token
//! ```

use std::process::ExitCode;
use std::time::Duration;

use rmcp_authz::dev::DevIssuer;
use rmcp_authz::token::JwtVerifier;

const ISSUER: &str = "https://auth.example.test";
const RESOURCE: &str = "https://mcp.example.test/mcp";

fn main() -> ExitCode {
    rmcp_authz_examples::report::exit_code(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The development issuer makes an ES256 key in memory and publishes its JWK Set.
    let issuer = DevIssuer::new(ISSUER)?;
    println!("issuer {ISSUER} publishes:\n{:#}\n", issuer.jwks());

    // The resource server trusts that JWK Set, for tokens meant for RESOURCE only.
    let verifier = JwtVerifier::builder(ISSUER, RESOURCE)
        .jwks_json(&issuer.jwks().to_string())
        .build()?;
    println!("verifier: {verifier:?}\n");

    let valid = issuer
        .token(RESOURCE)
        .subject("alice")
        .client_id("notes-app")
        .scopes(["notes:read", "notes:write"])
        .mint()?;
    let delegated = issuer
        .token(RESOURCE)
        .subject("alice")
        .client_id("notes-app")
        .scopes(["notes:read"])
        .actor("research-agent")
        .actor("orchestrator")
        .mint()?;
    let expired = issuer
        .token(RESOURCE)
        .claim("iat", 1_600_000_000)
        .expires_in(Duration::from_secs(300))
        .mint()?;
    let other_resource = issuer.token("https://other.example.test/mcp").mint()?;
    let id_token_typed = issuer.token(RESOURCE).typ(Some("JWT")).mint()?;
    let mut tampered = valid.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    let stranger = DevIssuer::new(ISSUER)?.token(RESOURCE).mint()?;

    let cases = [
        ("a valid token", valid.as_str()),
        ("a delegated token", delegated.as_str()),
        ("an expired token", expired.as_str()),
        ("a token for another resource", other_resource.as_str()),
        ("a token typed JWT, not at+jwt", id_token_typed.as_str()),
        ("a token with a tampered signature", tampered.as_str()),
        ("a token signed by an unknown key", stranger.as_str()),
        ("not a token at all", "hello"),
    ];
    let mut accepted = 0;
    for (what, token) in cases {
        match verifier.verify_sync(token) {
            Ok(who) => {
                accepted += 1;
                let chain: Vec<&str> = who.delegation_chain().iter().map(|a| a.id()).collect();
                println!(
                    "ACCEPT {what}: subject {:?}, agent {:?}, scopes {:?}, chain {chain:?}",
                    who.subject().unwrap_or("-"),
                    who.agent().unwrap_or("-"),
                    who.scopes(),
                );
            }
            Err(e) => println!("REJECT {what}: {} -> {e}", e.error_code()),
        }
    }
    println!("\n{accepted} of {} tokens accepted", cases.len());
    if accepted != 2 {
        return Err(
            format!("expected exactly the 2 valid tokens to be accepted, got {accepted}").into(),
        );
    }
    Ok(())
}
