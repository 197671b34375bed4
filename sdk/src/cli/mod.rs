//! The `rmcp-authz` command-line tool (feature `cli`): inspect tokens, check them against a
//! configuration, lint and show policies, and verify, query, summarize and follow audit
//! files. The `rmcp-authz` binary is [`run`]; `docs/cli.md` has examples.
//!
//! Exit codes: 0 the token was accepted / the call allowed / the policy has no errors /
//! the audit chain holds / the audit command ran (even when no event matched) / the audit
//! file was repaired; 1 the token was refused, the call denied, the token has problems, the
//! policy has errors, or the audit chain is broken or torn (or its anchor is gone); 2 the
//! command could not run (bad arguments, unreadable or invalid configuration, undecodable
//! token, an unreadable audit file or a line in it that is not an audit event, an audit
//! file that `repair` refuses).
//!
//! The tool lives in the library, not in its binary, so that it can use what the crate
//! keeps to itself (a policy's rules and hierarchy, for `policy check` and `policy show`)
//! without making that public API.

mod args;
mod audit;
#[cfg(feature = "cedar")]
mod cedar;
mod policy;
#[cfg(feature = "postgres")]
mod revocation;
mod token;

use std::process::ExitCode;

use clap::Parser as _;

use args::{AuditCommand, Cli, Command, PolicyCommand, PostgresSource, TokenCommand};

/// Runs the `rmcp-authz` command line of this process (`std::env::args_os`) and returns
/// its exit code: 0 when the command succeeded (the token accepted, the call allowed, the
/// policy clean, the chain intact), 1 when it ran and the answer is no, 2 when it could not
/// run, with the reason on standard error. `--help` and `--version` print and exit 0.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     rmcp_authz::cli::run()
/// }
/// ```
#[must_use]
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Token(TokenCommand::Inspect { token }) => {
            token::read(&token).and_then(|t| token::inspect(&t, json))
        }
        Command::Token(TokenCommand::Check {
            config,
            token,
            tool,
        }) => token::read(&token).and_then(|t| token::check(&config, &t, tool.as_deref(), json)),
        Command::Token(TokenCommand::Revoke {
            target,
            postgres,
            ttl,
            reason,
        }) => database(&postgres).and_then(|_db| {
            #[cfg(feature = "postgres")]
            return revocation::revoke(&_db, &target, ttl, reason.as_deref(), json);
            #[cfg(not(feature = "postgres"))]
            return Err(without_postgres(&(target, ttl, reason)));
        }),
        Command::Token(TokenCommand::Unrevoke { target, postgres }) => database(&postgres)
            .and_then(|_db| {
                #[cfg(feature = "postgres")]
                return revocation::unrevoke(&_db, &target, json);
                #[cfg(not(feature = "postgres"))]
                return Err(without_postgres(&target));
            }),
        Command::Token(TokenCommand::Revocations { postgres }) => {
            database(&postgres).and_then(|_db| {
                #[cfg(feature = "postgres")]
                return revocation::list(&_db, json);
                #[cfg(not(feature = "postgres"))]
                return Err(without_postgres(&()));
            })
        }
        Command::Policy(PolicyCommand::Check {
            config,
            tools,
            #[cfg(feature = "cedar")]
            tools_json,
            #[cfg(all(feature = "cedar", feature = "jwks"))]
            server,
            #[cfg(all(feature = "cedar", feature = "jwks"))]
            token,
        }) => {
            #[cfg(feature = "cedar")]
            let listed = {
                #[cfg(feature = "jwks")]
                let from_server = server.zip(token);
                #[cfg(not(feature = "jwks"))]
                let from_server: Option<(String, String)> = None;
                cedar::ToolList::of(tools_json, from_server)
            };
            #[cfg(not(feature = "cedar"))]
            let listed = ();
            policy::check(&config, &tools, listed, json)
        }
        #[cfg(feature = "cedar")]
        Command::Policy(PolicyCommand::Explain {
            config,
            tools_json,
            #[cfg(feature = "jwks")]
            server,
            tool,
            arguments,
            token,
        }) => token::read(&token).and_then(|t| {
            #[cfg(not(feature = "jwks"))]
            let server: Option<String> = None;
            let listed = cedar::ToolList::of(tools_json, server.map(|s| (s, t.clone())));
            cedar::explain(&config, listed, &t, &tool, arguments.as_deref(), json)
        }),
        Command::Policy(PolicyCommand::Show { config, tools }) => {
            policy::show(&config, &tools, json)
        }
        Command::Audit(AuditCommand::Verify {
            files,
            postgres,
            chain,
            anchor,
            anchor_file,
            rotated,
        }) => audit::read_anchor(anchor, anchor_file.as_deref()).and_then(|anchor| {
            #[cfg(not(feature = "postgres"))]
            let _ = chain;
            match source(files, &postgres)? {
                audit::Source::Files(files) => audit::verify(&files, anchor, rotated, json),
                #[cfg(feature = "postgres")]
                audit::Source::Postgres(db) => {
                    audit::verify_postgres(&db, chain, anchor, rotated, json)
                }
            }
        }),
        Command::Audit(AuditCommand::Repair { file }) => audit::repair(&file, json),
        Command::Audit(AuditCommand::Query {
            files,
            postgres,
            filter,
            limit,
            format,
        }) => source(files, &postgres)
            .and_then(|s| audit::query(&s, &filter, limit, format.or_jsonl(json))),
        Command::Audit(AuditCommand::Stats {
            files,
            postgres,
            filter,
            by,
        }) => source(files, &postgres).and_then(|s| audit::stats(&s, &filter, by, json)),
        Command::Audit(AuditCommand::Tail {
            file,
            postgres,
            lines,
            follow,
            filter,
            format,
        }) => match source(file.into_iter().collect(), &postgres) {
            Ok(audit::Source::Files(files)) => {
                audit::tail(&files[0], lines, follow, &filter, format.or_jsonl(json))
            }
            #[cfg(feature = "postgres")]
            Ok(audit::Source::Postgres(db)) => {
                audit::tail_postgres(&db, lines, follow, &filter, format.or_jsonl(json))
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Refused) => ExitCode::from(1),
        Err(message) => {
            eprintln!("rmcp-authz: {message}");
            ExitCode::from(2)
        }
    }
}

/// The database a `--postgres` argument names (`env:VAR` reads it from the environment).
#[cfg(feature = "postgres")]
fn database(arg: &str) -> Result<crate::postgres::Database, String> {
    audit::database(arg)
}

/// Without the `postgres` feature, no database can be named.
#[cfg(not(feature = "postgres"))]
fn database(_arg: &str) -> Result<(), String> {
    Err(without_postgres(&()))
}

/// The error for a PostgreSQL command in a build without the `postgres` feature.
#[cfg(not(feature = "postgres"))]
fn without_postgres<T>(_unused: &T) -> String {
    "this rmcp-authz was built without PostgreSQL support: rebuild it with the `postgres` feature (cargo install rmcp-authz --features cli,postgres)".to_owned()
}

/// Where audit records are read from: the files, or the `--postgres` database.
fn source(
    files: Vec<std::path::PathBuf>,
    postgres: &PostgresSource,
) -> Result<audit::Source, String> {
    match &postgres.postgres {
        None => Ok(audit::Source::Files(files)),
        #[cfg(feature = "postgres")]
        Some(url) => database(url).map(|db| audit::Source::Postgres(Box::new(db))),
        #[cfg(not(feature = "postgres"))]
        Some(url) => database(url).map(|()| audit::Source::Files(files)),
    }
}

/// A runtime for a command's async work (a server's tools, a database), on this thread.
#[cfg(any(all(feature = "cedar", feature = "jwks"), feature = "postgres"))]
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an async runtime: {e}"))
}

/// What a command concluded, mapped to the exit code.
enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1.
    Refused,
}

/// The message for an error that stops a command: what the error says, then a
/// `  caused by: <cause>` line for each cause ([`Error::source`](std::error::Error::source))
/// that the text before it does not already say (rmcp-authz's own errors put their cause in
/// their message). Never the error's `Debug` form.
fn error_message(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message.push_str("\n  caused by: ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    message
}

/// Prints `value` as pretty JSON on standard output.
fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::error_message;

    /// An error whose message does not say its cause.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot load the keys")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn error_message_adds_a_cause_the_message_does_not_say() {
        let error = Outer(std::io::Error::other("permission denied"));
        assert_eq!(
            error_message(&error),
            "cannot load the keys\n  caused by: permission denied"
        );
    }

    #[test]
    fn error_message_leaves_out_a_cause_the_message_already_says() {
        let error = crate::config::Config::from_file("/nonexistent/rmcp-authz.toml")
            .expect_err("no such file");
        let message = error_message(&error);
        assert!(
            message.starts_with("cannot read configuration file /nonexistent/rmcp-authz.toml: "),
            "{message}"
        );
        assert!(!message.contains("caused by"), "{message}");
    }
}
