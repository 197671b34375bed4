//! `rmcp-authz`: inspect tokens, check them against a configuration, lint and show
//! policies, and verify, query, summarize and follow audit files. Built with
//! `--features cli`; the tool is [`rmcp_authz::cli::run`], and `docs/cli.md` has examples.

fn main() -> std::process::ExitCode {
    rmcp_authz::cli::run()
}
