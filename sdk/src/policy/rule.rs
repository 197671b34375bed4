//! [`Rule`]: what one tool, resource, prompt, skill or custom request needs; and
//! [`Operation`]: what a request asks the policy about.

use std::fmt;

use super::{Conditions, ScopeExpr};

/// A rule: the scopes an operation needs and, optionally, the only clients it admits and
/// [`Conditions`] on the delegation chain and token age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(super) requirement: ScopeExpr,
    pub(super) clients: Option<Vec<String>>,
    pub(super) conditions: Conditions,
}

impl Rule {
    /// A rule needing `requirement`.
    pub fn new(requirement: impl Into<ScopeExpr>) -> Rule {
        Rule {
            requirement: requirement.into(),
            clients: None,
            conditions: Conditions::default(),
        }
    }

    /// Adds conditions on the delegation chain and token age (see [`Conditions`]).
    #[must_use]
    pub fn with(mut self, conditions: Conditions) -> Rule {
        self.conditions = conditions;
        self
    }

    /// The rule's own conditions (the policy's defaults fill in what they leave unset).
    pub fn conditions(&self) -> &Conditions {
        &self.conditions
    }

    /// Admits only callers whose client (`client_id`, else `azp`) is one of `clients`;
    /// others are denied with
    /// [`DenyReason::ClientNotPermitted`](super::DenyReason::ClientNotPermitted) whatever
    /// their scopes.
    #[must_use]
    pub fn only_clients<S: Into<String>>(mut self, clients: impl IntoIterator<Item = S>) -> Rule {
        self.clients = Some(clients.into_iter().map(Into::into).collect());
        self
    }

    /// The scope requirement.
    pub fn requirement(&self) -> &ScopeExpr {
        &self.requirement
    }

    /// The admitted clients, if restricted.
    pub fn clients(&self) -> Option<&[String]> {
        self.clients.as_deref()
    }
}

impl From<ScopeExpr> for Rule {
    fn from(requirement: ScopeExpr) -> Self {
        Rule::new(requirement)
    }
}

impl From<&str> for Rule {
    /// A rule needing this one scope (taken literally).
    fn from(scope: &str) -> Self {
        Rule::new(scope)
    }
}

/// An MCP operation the policy decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation<'a> {
    /// `tools/call` of the named tool (and task operations on a task it started).
    CallTool(&'a str),
    /// `resources/read` (and subscriptions, directory reads) of the URI.
    ReadResource(&'a str),
    /// `prompts/get` of the named prompt.
    GetPrompt(&'a str),
    /// `skills/get` of the named skill (and the skill's place in `skills/list`).
    GetSkill(&'a str),
    /// A custom (non-MCP) request method.
    Custom(&'a str),
    /// Anything that needs only a valid token: `initialize`, `ping`, the `*/list` methods.
    Basic,
}

impl fmt::Display for Operation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::CallTool(name) => write!(f, "tools/call {name}"),
            Operation::ReadResource(uri) => write!(f, "resources/read {uri}"),
            Operation::GetPrompt(name) => write!(f, "prompts/get {name}"),
            Operation::GetSkill(name) => write!(f, "skills/get {name}"),
            Operation::Custom(method) => write!(f, "{method}"),
            Operation::Basic => f.write_str("basic access"),
        }
    }
}
