//! `rmcp-authz`: inspect tokens, check them against a configuration, lint and show
//! policies, and verify, query, summarize and follow audit files. Built with
//! `--features cli`.
//!
//! Exit codes: 0 the token was accepted / the call allowed / the policy has no errors /
//! the audit chain holds / the audit command ran (even when no event matched); 1 the token
//! was refused, the call denied, the token has problems, the policy has errors, or the
//! audit chain is broken or torn; 2 the command could not run (bad arguments, unreadable or
//! invalid configuration, undecodable token, an unreadable audit file or a line in it that
//! is not an audit event). `docs/cli.md` has examples.

mod audit_cmd;
mod policy_cmd;
mod token_cmd;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Authorization for MCP servers: inspect access tokens, check them, lint policies.
#[derive(Debug, Parser)]
#[command(name = "rmcp-authz", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of JSON Lines audit files (oldest first) and name the first
    /// record that was edited, deleted or reordered.
    Verify {
        /// The audit files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the events of JSON Lines audit files that match the filters, as a table or
    /// (with --format jsonl or --json) as their lines, unchanged.
    Query {
        /// The audit files, read in the order given (oldest first).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        filter: audit_cmd::Filter,
        /// Print at most N events: the first N that match.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// How to print events (--json means jsonl).
        #[arg(long, value_enum, default_value_t)]
        format: audit_cmd::Format,
    },
    /// Count the events of JSON Lines audit files per agent (or per subject, or per user
    /// and delegation chain): events, allowed, denied, errors, and the most used targets;
    /// then the totals.
    Stats {
        /// The audit files, read in the order given.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        filter: audit_cmd::Filter,
        /// What to count events by.
        #[arg(long, value_enum, default_value_t)]
        by: audit_cmd::GroupBy,
    },
    /// Print the last events of an audit file; with -f, keep printing new ones as they
    /// are written, following the path across rotations, until interrupted.
    Tail {
        /// The audit file (the active one, for -f).
        file: PathBuf,
        /// Print the last N matching events.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
        lines: usize,
        /// Keep following the file (polling every 200 ms) for new events.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        filter: audit_cmd::Filter,
        /// How to print events (--json means jsonl).
        #[arg(long, value_enum, default_value_t)]
        format: audit_cmd::Format,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Decode a token WITHOUT verifying it: header, claims, expiry, and problems a verifier
    /// would object to.
    Inspect {
        /// The token, or `-` to read it from standard input.
        token: String,
    },
    /// Verify a token with a configuration's keys and explain the decision.
    Check {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The token, or `-` to read it from standard input.
        token: String,
        /// Also decide a call of this tool.
        #[arg(long)]
        tool: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Lint a configuration's policy: similar scope names, rules nobody can meet,
    /// shadowed resource templates, and (with --tools) tools without rules and rules
    /// without tools.
    Check {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The server's tool names, comma separated.
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
    },
    /// Show the effective rules: per tool, resource and prompt, what it requires.
    Show {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The server's tool names, comma separated (tools without a rule are listed too).
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
    },
}

/// What a command concluded, mapped to the exit code.
enum Outcome {
    Ok,
    Refused,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Token(TokenCommand::Inspect { token }) => {
            read_token(&token).and_then(|t| token_cmd::inspect(&t, cli.json))
        }
        Command::Token(TokenCommand::Check {
            config,
            token,
            tool,
        }) => read_token(&token)
            .and_then(|t| token_cmd::check(&config, &t, tool.as_deref(), cli.json)),
        Command::Policy(PolicyCommand::Check { config, tools }) => {
            policy_cmd::check(&config, &tools, cli.json)
        }
        Command::Policy(PolicyCommand::Show { config, tools }) => {
            policy_cmd::show(&config, &tools, cli.json)
        }
        Command::Audit(AuditCommand::Verify { files }) => audit_cmd::verify(&files, cli.json),
        Command::Audit(AuditCommand::Query {
            files,
            filter,
            limit,
            format,
        }) => audit_cmd::query(&files, &filter, limit, events_format(format, cli.json)),
        Command::Audit(AuditCommand::Stats { files, filter, by }) => {
            audit_cmd::stats(&files, &filter, by, cli.json)
        }
        Command::Audit(AuditCommand::Tail {
            file,
            lines,
            follow,
            filter,
            format,
        }) => audit_cmd::tail(
            &file,
            lines,
            follow,
            &filter,
            events_format(format, cli.json),
        ),
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

/// How the audit commands print events: `--json` means JSON Lines.
fn events_format(format: audit_cmd::Format, json: bool) -> audit_cmd::Format {
    if json {
        audit_cmd::Format::Jsonl
    } else {
        format
    }
}

/// The token argument, or standard input for `-`; surrounding whitespace and a
/// `Bearer ` prefix are removed.
fn read_token(arg: &str) -> Result<String, String> {
    let raw = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
        text
    } else {
        arg.to_owned()
    };
    let token = raw.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token);
    if token.is_empty() {
        return Err("the token is empty".to_owned());
    }
    Ok(token.to_owned())
}

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
        let error = rmcp_authz::config::Config::from_file("/nonexistent/rmcp-authz.toml")
            .expect_err("no such file");
        let message = error_message(&error);
        assert!(
            message.starts_with("cannot read configuration file /nonexistent/rmcp-authz.toml: "),
            "{message}"
        );
        assert!(!message.contains("caused by"), "{message}");
    }
}
