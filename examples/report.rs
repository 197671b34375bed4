//! How an example reports the error that stopped it: the error's message and each cause
//! it does not already say, on standard error, and exit status 1.
//!
//! A `main` that returns `Result<(), Box<dyn Error>>` prints the error's `Debug` form
//! (`Error: TornTail { path: "audit.jsonl" }`), which names a variant instead of saying
//! what happened and what to do. The examples return [`exit_code`] instead:
//!
//! ```no_run
//! # use std::error::Error;
//! # use std::process::ExitCode;
//! fn main() -> ExitCode {
//!     rmcp_authz_examples::report::exit_code(run())
//! }
//!
//! fn run() -> Result<(), Box<dyn Error>> {
//!     // ...
//!     Ok(())
//! }
//! ```

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

/// Success for `Ok`; for `Err`, prints `error: <message>` and one `  caused by: <cause>`
/// line per cause the message does not already include, and returns exit status 1.
pub fn exit_code(result: Result<(), Box<dyn Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", Report(&*error));
            ExitCode::FAILURE
        }
    }
}

/// An error's message followed by its chain of causes ([`Error::source`]), one per line as
/// `  caused by: <cause>`. A cause whose text the lines before it already contain (most
/// errors of `rmcp-authz` put their cause in their own message) is left out.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !said.contains(&text) {
                write!(f, "\n  caused by: {text}")?;
                said.push('\n');
                said.push_str(&text);
            }
            cause = error.source();
        }
        Ok(())
    }
}
