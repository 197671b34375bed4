//! Why a policy could not be built ([`PolicyError`]) and why a scope expression could not
//! be parsed ([`ExprError`]).
//!
//! Defined here, on the ground floor, because [`ConfigError`](super::ConfigError) carries
//! them; users find them at `rmcp_authz::policy`.

/// Why a scope expression could not be parsed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    /// The text does not follow the expression syntax.
    #[error("scope expression {text:?}: {reason} at byte {position}")]
    Syntax {
        /// The expression text.
        text: String,
        /// What was expected.
        reason: &'static str,
        /// Where, in bytes from the start.
        position: usize,
    },
    /// A scope name is empty, has characters RFC 6749 section 3.3 does not allow, or has
    /// one of the expression syntax (`|`, `(`, `)`).
    #[error(
        "invalid scope {scope:?}: a scope is one or more printable ASCII characters other than space, '\"', '\\\\', '|', '(' and ')'"
    )]
    InvalidScope {
        /// The offending scope.
        scope: String,
    },
    /// An `any of` with no alternatives can never hold.
    #[error("an \"any of\" requirement with no alternatives can never be met")]
    EmptyAnyOf,
}

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A rule's scope expression is invalid.
    #[error("{what}: {source}")]
    Expr {
        /// The rule, e.g. `tool "purge"`.
        what: String,
        /// The expression error.
        #[source]
        source: ExprError,
    },
    /// Two rules for the same tool, resource, prompt or request.
    #[error("{what} has two rules; give each one rule")]
    DuplicateRule {
        /// The rule, e.g. `tool "purge"`.
        what: String,
    },
    /// A resource rule's URI template does not parse.
    #[error("resource rule {template:?}: braces do not pair up or a variable is unnamed")]
    BadTemplate {
        /// The template.
        template: String,
    },
    /// A tool's `_meta` requirement is not a string.
    // The key is `policy::TOOL_META_KEY`; a test below checks they agree.
    #[error("tool {tool:?}: _meta \"rmcp-authz/requires\" must be a scope expression string")]
    BadMeta {
        /// The tool.
        tool: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_meta_names_the_tool_meta_key() {
        let e = PolicyError::BadMeta { tool: "t".into() };
        let key = format!("{:?}", crate::policy::TOOL_META_KEY);
        assert!(e.to_string().contains(&key), "{e}");
    }
}
