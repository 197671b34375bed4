//! Why Cedar policies could not be loaded or checked against a server's tools
//! ([`CedarError`]), and where in a policy file a problem is ([`SourcePosition`]).
//!
//! Defined here, on the ground floor, because [`ConfigError`](super::ConfigError) carries
//! them; users find them at `rmcp_authz::policy::cedar`.

use std::fmt;

/// A place in a Cedar policy source: its name (a file path, or the name given with the
/// text), and a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The source's name.
    pub source: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl SourcePosition {
    /// The position of byte `offset` in `text`, a source named `source`.
    pub(crate) fn at(source: &str, text: &str, offset: usize) -> SourcePosition {
        let before = text.get(..offset.min(text.len())).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        SourcePosition {
            source: source.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// One problem with one Cedar policy, found when the policies were checked against the
/// schema generated from the server's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The policy's id (its `@id`, else `policyN`).
    pub policy: String,
    /// Where the problem is.
    pub position: SourcePosition,
    /// The tool whose schema the policy was checked against, when the problem is about
    /// one tool (an argument it does not have, or has with another type).
    pub tool: Option<String>,
    /// What is wrong, in Cedar's words.
    pub message: String,
    /// What to do, when Cedar or this crate can say.
    pub help: Option<String>,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: policy {:?}", self.position, self.policy)?;
        if let Some(tool) = &self.tool {
            write!(f, " (checked for tool {tool:?})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "; {help}")?;
        }
        Ok(())
    }
}

/// Why Cedar policies could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CedarError {
    /// A policy file could not be read.
    #[error("cannot read Cedar policies from {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's error.
        message: String,
    },
    /// The text is not Cedar.
    #[error("{position}: not a Cedar policy: {message}")]
    Parse {
        /// Where.
        position: SourcePosition,
        /// What the parser expected.
        message: String,
    },
    /// Two policies have the same id.
    #[error(
        "{position}: Cedar policy id {policy:?} is already taken; give each policy its own @id"
    )]
    DuplicateId {
        /// The id.
        policy: String,
        /// Where the second policy is.
        position: SourcePosition,
    },
    /// A policy's `@scopes` annotation is not a space-separated list of scope names.
    #[error(
        "{position}: policy {policy:?}: @scopes({value:?}) must be scope names separated by spaces"
    )]
    BadScopes {
        /// The policy.
        policy: String,
        /// Where it is.
        position: SourcePosition,
        /// The annotation's value.
        value: String,
    },
    /// A policy template (`?principal`, `?resource`): templates are linked at run time in
    /// Cedar, and this crate has no links to give them, so one would be silently ignored.
    #[error(
        "{position}: policy {policy:?} is a template (it has ?principal or ?resource); write the entity it stands for instead"
    )]
    Template {
        /// The template.
        policy: String,
        /// Where it is.
        position: SourcePosition,
    },
    /// A `@scopes` annotation on a `forbid`: only a permit can be unlocked by scopes.
    #[error(
        "{position}: policy {policy:?}: @scopes belongs on a permit (the scopes that unlock it), not on a forbid"
    )]
    ScopesOnForbid {
        /// The policy.
        policy: String,
        /// Where it is.
        position: SourcePosition,
    },
    /// A policy names a tool the server does not have.
    #[error(
        "{position}: policy {policy:?} names tool {tool:?}, which the server does not have; fix the name or remove the policy"
    )]
    UnknownTool {
        /// The policy.
        policy: String,
        /// Where it is.
        position: SourcePosition,
        /// The tool it names.
        tool: String,
    },
    /// A second handler has a tool the policies were compiled for with another input
    /// schema or other annotations (or one the first handler did not have).
    #[error(
        "tool {tool:?} of this handler differs from the one the Cedar policies were checked against (input schema or annotations); one Authz with Cedar policies serves one set of tools: build an Authz per handler"
    )]
    ToolChanged {
        /// The tool.
        tool: String,
    },
    /// A claim chosen for the principal entity has an invalid name or type.
    #[error("Cedar claim {claim:?}: {message}")]
    BadClaim {
        /// The claim.
        claim: String,
        /// What is wrong.
        message: String,
    },
    /// The policies do not type-check against the schema generated from the server's
    /// tools: every problem found, each with its policy id and position.
    #[error("{}", problems_text(.0))]
    Invalid(Vec<PolicyProblem>),
    /// The schema generated for a tool was refused by Cedar (a bug in this crate, or a
    /// tool name Cedar cannot hold): the tool and Cedar's message.
    #[error("the Cedar schema generated for tool {tool:?} was refused: {message}")]
    Schema {
        /// The tool.
        tool: String,
        /// Cedar's message.
        message: String,
    },
}

fn problems_text(problems: &[PolicyProblem]) -> String {
    let mut text = format!(
        "{} problem(s) in the Cedar policies (checked against the schema generated from the server's tools):",
        problems.len()
    );
    for problem in problems {
        text.push_str("\n  ");
        text.push_str(&problem.to_string());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "permit(principal, action, resource);\n  forbid(é, x)";
        let at = |offset| SourcePosition::at("p.cedar", text, offset);
        assert_eq!(at(0).to_string(), "p.cedar:1:1");
        let second = text.find("forbid").unwrap();
        assert_eq!(at(second).to_string(), "p.cedar:2:3");
        let after_accent = text.find(", x").unwrap();
        assert_eq!(at(after_accent).column, 11);
        assert_eq!(at(10_000).line, 2);
    }
}
