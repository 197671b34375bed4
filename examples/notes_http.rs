//! The notes MCP server over Streamable HTTP, behind rmcp-authz.
//!
//! Without options it trusts a built-in development issuer and prints ready-to-use tokens
//! (for an agent that may read, one that may write, and an admin), so any MCP client can
//! connect with `Authorization: Bearer <token>`. With `--issuer` and `--jwks` (or
//! `--config`) it trusts a real authorization server instead.
//!
//! `--audit-file` records every decision, and `--durable`, `--fail-closed`,
//! `--rotate-bytes` and `--record-arguments` (with `--redact`) say how (see
//! `docs/audit.md`). `--config` takes the verifier, the policy and, when the file has an
//! `[audit]` section, the audit log from a file; for a file without that section, the
//! audit flags add the audit log. Flags that do not fit (a second audit log, an audience
//! other than the file's) are refused with exit status 2, naming what to change; an error
//! at start-up (a port in use, an unreadable file) is printed with its causes, exit status 1.
//!
//! Run with:
//!
//! ```sh
//! cargo run -p rmcp-authz-examples --example notes_http
//! cargo run -p rmcp-authz-examples --example notes_http -- --port 8080 \
//!     --issuer https://auth.example.com --jwks jwks.json --audience https://mcp.example.com/mcp
//! cargo run -p rmcp-authz-examples --example notes_http -- --config rmcp-authz.toml
//! cargo run -p rmcp-authz-examples --example notes_http -- --audit-file notes-audit.jsonl \
//!     --durable --fail-closed --rotate-bytes 10000000 --record-arguments --redact text
//! ```
//!
//! (`--config` takes a file like `docs/rmcp-authz.example.toml`, with the JWK Set it names
//! beside it.)

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use std::sync::Arc;

use rmcp_authz::audit::{ArgumentRecording, Auditor, Durability, JsonLines};
use rmcp_authz::config::Config;
use rmcp_authz::dev::DevIssuer;
use rmcp_authz::token::JwtVerifier;
use rmcp_authz::{Authz, AuthzBuilder};
use rmcp_authz_examples::notes::{notes_policy, router};
use rmcp_authz_examples::report;

#[derive(Debug, Parser)]
#[command(
    name = "notes_http",
    about = "The notes MCP server over HTTP, behind rmcp-authz"
)]
struct Args {
    /// The port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Trust this issuer (with --jwks) instead of the development issuer.
    #[arg(long, requires = "jwks")]
    issuer: Option<String>,
    /// The issuer's JWK Set file.
    #[arg(long, requires = "issuer")]
    jwks: Option<PathBuf>,
    /// This server's canonical URI, the audience tokens must name
    /// (default http://127.0.0.1:PORT/mcp; with --config, the file's, which this must equal).
    #[arg(long)]
    audience: Option<String>,
    /// Take the verifier and the policy from a configuration file (and the audit log, if
    /// the file has an [audit] section; else the audit flags add one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Record every decision to this JSON Lines audit file (hash-chained, mode 0600).
    #[arg(long)]
    audit_file: Option<PathBuf>,
    /// With --audit-file: answer each call only once its event is synced to disk.
    #[arg(long)]
    durable: bool,
    /// With --audit-file: refuse a request whose event cannot be written (JSON-RPC error
    /// -32005) instead of serving it unaudited.
    #[arg(long)]
    fail_closed: bool,
    /// With --audit-file: when a write would take the file past BYTES, rename it to
    /// FILE.<UTC time> and continue the chain in a new file (default: never rotate).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    rotate_bytes: Option<u64>,
    /// With --audit-file: also record tool and prompt arguments in clear (by default only
    /// a keyed digest of them).
    #[arg(long)]
    record_arguments: bool,
    /// With --record-arguments: replace the values of these fields (at any depth) with
    /// "[redacted]"; comma separated or repeated.
    #[arg(
        long,
        value_name = "FIELD",
        value_delimiter = ',',
        requires = "record_arguments"
    )]
    redact: Vec<String>,
}

impl Args {
    /// The audit flags given, each with the `[audit]` setting of a configuration file
    /// that does the same.
    fn audit_flags(&self) -> Vec<(&'static str, &'static str)> {
        [
            (self.audit_file.is_some(), "--audit-file", "file = \"...\""),
            (self.durable, "--durable", "durability = \"durable\""),
            (self.fail_closed, "--fail-closed", "fail_closed = true"),
            (
                self.rotate_bytes.is_some(),
                "--rotate-bytes",
                "rotate_bytes = ...",
            ),
            (
                self.record_arguments,
                "--record-arguments",
                "record_arguments = true",
            ),
            (!self.redact.is_empty(), "--redact", "redact = [...]"),
        ]
        .into_iter()
        .filter_map(|(given, flag, setting)| given.then_some((flag, setting)))
        .collect()
    }
}

/// Stops with clap's usage error (exit status 2): flags that cannot work together.
fn refuse(message: String) -> ! {
    Args::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// Refuses the flag combinations that cannot work whatever a configuration file says,
/// each naming the flags and what to do.
fn check_flags(args: &Args) {
    if let Some(path) = &args.config
        && (args.issuer.is_some() || args.jwks.is_some())
    {
        refuse(format!(
            "--issuer and --jwks cannot be combined with --config {}: the file's [verifier] section names the issuer and its keys; set `issuer` and `jwks_file` there, or drop --config",
            path.display()
        ));
    }
    let flags = args.audit_flags();
    if args.config.is_none() && args.audit_file.is_none() && !flags.is_empty() {
        refuse(format!(
            "{} needs an audit log: add --audit-file FILE",
            flag_names(&flags)
        ));
    }
}

/// Refuses the flags that contradict the configuration file at `path`.
fn check_flags_with(args: &Args, path: &Path, config: &Config) {
    let path = path.display();
    if let Some(audience) = &args.audience {
        let file = config.verifier().audience();
        if audience != file {
            refuse(format!(
                "--audience {audience} differs from the audience {file} that --config {path} sets in [verifier], which tokens are checked against; change `audience` there, or drop --audience"
            ));
        }
    }
    let flags = args.audit_flags();
    if flags.is_empty() {
        return;
    }
    if config.audit().is_some() {
        let settings = flags.iter().map(|(_, s)| *s).collect::<Vec<_>>().join(", ");
        refuse(format!(
            "{} cannot be combined with --config {path}: its [audit] section already sets up the audit log; set {settings} in that section, or remove the section to set up the audit log with flags",
            flag_names(&flags)
        ));
    }
    if args.audit_file.is_none() {
        refuse(format!(
            "{} needs an audit log: add --audit-file FILE, or an [audit] section to {path}",
            flag_names(&flags)
        ));
    }
}

fn flag_names(flags: &[(&str, &str)]) -> String {
    flags.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
}

/// The audit log the flags ask for, if any.
fn audit_log(args: &Args) -> Result<Option<Auditor>, Box<dyn Error>> {
    let Some(path) = &args.audit_file else {
        return Ok(None);
    };
    let mut file = JsonLines::open(path)?;
    let mut how = vec![if args.durable { "durable" } else { "buffered" }.to_owned()];
    if args.fail_closed {
        how.push("fail-closed".to_owned());
    }
    if let Some(max) = args.rotate_bytes {
        file = file.rotate_at(max);
        how.push(format!("rotated at {max} bytes"));
    }
    let durability = if args.durable {
        Durability::Durable
    } else {
        Durability::default()
    };
    let mut auditor = Auditor::builder(Arc::new(file))
        .durability(durability)
        .fail_closed(args.fail_closed);
    if args.record_arguments {
        auditor = auditor
            .arguments(ArgumentRecording::random_key().clear_with_redaction(args.redact.clone()));
        how.push(match args.redact.as_slice() {
            [] => "arguments in clear".to_owned(),
            fields => format!("arguments in clear, {} redacted", fields.join(", ")),
        });
    }
    println!("Audit log: {} ({})", path.display(), how.join(", "));
    Ok(Some(auditor.build()?))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    check_flags(&args);
    report::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{}: {e}; choose another --port (0 picks a free one)",
                args.port
            )
        })?;
    let local = listener.local_addr()?;
    let config = match &args.config {
        Some(path) => {
            let config = Config::from_file(path)?;
            check_flags_with(&args, path, &config);
            Some(config)
        }
        None => None,
    };
    let audience = args
        .audience
        .clone()
        .unwrap_or_else(|| format!("http://{local}/mcp"));

    // The file's [audit] section starts its audit log (check_flags_with refused audit
    // flags beside it); otherwise the flags do.
    let auditor = match config.as_ref().and_then(Config::audit) {
        Some(settings) => Some(settings.start()?),
        None => audit_log(&args)?,
    };
    let with_audit = |builder: AuthzBuilder| match auditor {
        Some(a) => builder.auditor(a).build(),
        None => builder.build(),
    };
    let authz = match (config, &args.issuer, &args.jwks) {
        (Some(config), _, _) => {
            let (verifier, policy) = config.into_parts();
            with_audit(Authz::builder(verifier, policy))
        }
        (None, Some(issuer), Some(jwks)) => with_audit(Authz::builder(
            JwtVerifier::builder(issuer.clone(), audience.clone())
                .jwks_file(jwks)
                .build()?,
            notes_policy(),
        )),
        _ => {
            let issuer = DevIssuer::new("https://dev-issuer.invalid")?;
            println!("Trusting a development issuer. Tokens (valid for one hour):");
            for (agent, scopes) in [
                ("reader-agent", vec!["notes:read"]),
                ("writer-agent", vec!["notes:write"]),
                ("admin-agent", vec!["notes:admin", "ops:purge"]),
            ] {
                let token = issuer
                    .token(audience.clone())
                    .subject("dev-user")
                    .client_id(agent)
                    .scopes(&scopes)
                    .mint()?;
                println!("\n{agent} ({}):\n{token}", scopes.join(" "));
            }
            with_audit(Authz::builder(
                issuer.verifier(audience.clone()).build()?,
                notes_policy(),
            ))
        }
    };
    // Fails now, not on the first request, if a rule names a tool the server does not have.
    let app = router(&authz)?;
    println!(
        "\nnotes MCP server: http://{local}/mcp (audience {})",
        authz.resource()
    );
    println!("metadata: {}", authz.resource_metadata_url());
    println!("Ctrl-C (or SIGTERM) to stop; the audit log is drained first.");
    authz
        .serve(listener, app, rmcp_authz::http::shutdown_signal())
        .await?;
    if let Some(auditor) = authz.auditor() {
        let stats = auditor.stats();
        println!(
            "audit log closed: {} events written, {} failed",
            stats.written, stats.failed
        );
    }
    Ok(())
}
