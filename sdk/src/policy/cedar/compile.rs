//! [`CedarPolicies::compile`]: the Cedar schema generated from a server's tools and the
//! principal model, every policy type-checked against the schema of each tool it applies
//! to, and the policies grouped by the operation they apply to.
//!
//! Cedar types a request's context per action, not per resource, so one schema cannot
//! give each tool's arguments their own type. Each tool gets its own schema (the same but
//! for `context.arguments`), and a policy is checked against the schema of every tool its
//! scope admits (`resource == Tool::"x"` admits one; `resource`, `resource is Tool`
//! admit all). A policy that names a tool in its `when` clause instead of its scope is
//! checked against every tool: name it in the scope, or test arguments with `has`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Authorizer, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
    ResourceConstraint, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic as _;
use rmcp::model::Tool;
use serde_json::{Value, json};

use super::arguments::{ToolArgs, names_word};
use super::{
    Cedar, CedarError, CedarPolicies, ClaimType, Governed, Info, Loaded, PolicyProblem,
    SourcePosition, Stage, first_offset,
};

/// The actions, one per MCP method a policy can govern.
pub(super) const CALL_TOOL: &str = "tools/call";
pub(super) const READ_RESOURCE: &str = "resources/read";
pub(super) const GET_PROMPT: &str = "prompts/get";

/// The source of each stage's id.
static NEXT_STAGE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What a policy may apply to.
#[derive(Debug, Clone, Copy)]
enum Kind<'a> {
    Tool(&'a str),
    Resource,
    Prompt,
}

impl Kind<'_> {
    fn action(self) -> &'static str {
        match self {
            Kind::Tool(_) => CALL_TOOL,
            Kind::Resource => READ_RESOURCE,
            Kind::Prompt => GET_PROMPT,
        }
    }

    fn entity_type(self) -> &'static str {
        match self {
            Kind::Tool(_) => "Tool",
            Kind::Resource => "Resource",
            Kind::Prompt => "Prompt",
        }
    }
}

/// Whether `policy`'s scope admits operations of `kind`.
fn applies(policy: &cedar_policy::Policy, kind: Kind<'_>) -> bool {
    let is_action = |uid: &EntityUid| {
        uid.type_name().basename() == "Action" && uid.id().unescaped() == kind.action()
    };
    let action = match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => is_action(&uid),
        ActionConstraint::In(uids) => uids.iter().any(is_action),
    };
    let of_kind = |uid: &EntityUid| {
        uid.type_name().to_string() == kind.entity_type()
            && match kind {
                Kind::Tool(name) => uid.id().unescaped() == name,
                Kind::Resource | Kind::Prompt => true,
            }
    };
    let resource = match policy.resource_constraint() {
        ResourceConstraint::Any => true,
        ResourceConstraint::Is(ty) => ty.to_string() == kind.entity_type(),
        ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => of_kind(&uid),
        ResourceConstraint::IsIn(ty, uid) => ty.to_string() == kind.entity_type() && of_kind(&uid),
    };
    action && resource
}

/// The tool `policy`'s scope names, if it names one.
pub(super) fn named_tool(policy: &cedar_policy::Policy) -> Option<String> {
    match policy.resource_constraint() {
        ResourceConstraint::Eq(uid)
        | ResourceConstraint::In(uid)
        | ResourceConstraint::IsIn(_, uid)
            if uid.type_name().to_string() == "Tool" =>
        {
            Some(uid.id().unescaped().to_owned())
        }
        _ => None,
    }
}

impl CedarPolicies {
    /// Checks the policies against `tools` (the server's own, as `tools/list` gives them)
    /// and compiles them: fails when a policy names a tool not among them, or does not
    /// type-check against the schema generated from them (every problem is reported,
    /// each with its policy id and position).
    pub fn compile(&self, tools: &[Tool]) -> Result<Cedar, CedarError> {
        for (claim, _) in &self.claims {
            if claim.is_empty() {
                return Err(CedarError::BadClaim {
                    claim: claim.clone(),
                    message: "a claim name cannot be empty".to_owned(),
                });
            }
        }
        let by_name: HashMap<&str, &Tool> = tools.iter().map(|t| (t.name.as_ref(), t)).collect();
        for loaded in &self.policies {
            if let Some(tool) = named_tool(&loaded.policy)
                && !by_name.contains_key(tool.as_str())
            {
                return Err(CedarError::UnknownTool {
                    policy: loaded.policy.id().to_string(),
                    position: loaded.position.clone(),
                    tool,
                });
            }
        }
        let mut problems = Problems::default();
        let mut governed = HashMap::new();
        let mut schemas = Vec::new();
        let mut sorted: Vec<&Tool> = tools.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for tool in sorted {
            let name = tool.name.as_ref();
            let args = ToolArgs::of(&tool.input_schema);
            let schema_json = schema_json(&args.schema_json(), &self.claims);
            schemas.push((name.to_owned(), schema_json.clone()));
            let applicable = self.matching(Kind::Tool(name));
            if applicable.is_empty() {
                // No policy decides this tool: its schema is never used.
                continue;
            }
            let schema = Schema::from_json_value(schema_json).map_err(|e| CedarError::Schema {
                tool: name.to_owned(),
                message: e.to_string(),
            })?;
            problems.check(&applicable, &schema, Some((name, &args)));
            // What the applicable policies can read: only that is handed to Cedar.
            let texts: Vec<String> = applicable.iter().map(|l| l.policy.to_string()).collect();
            let whole_context = whole_read(&texts, "context");
            governed.insert(
                name.to_owned(),
                Governed {
                    // Numbered below, once the map holds each name once.
                    index: 0,
                    policies: set_of(&applicable),
                    entity: tool_entity(tool)?,
                    times: whole_context
                        || texts
                            .iter()
                            .any(|t| names_word(t, "now") || names_word(t, "token_age")),
                    args: if whole_context || whole_read(&texts, "arguments") {
                        args
                    } else {
                        args.named_in(&texts)
                    },
                },
            );
        }
        // Each governed tool's place among them (a name given twice is one tool).
        for (index, tool) in governed.values_mut().enumerate() {
            tool.index = index;
        }
        // The policies that apply to no tool, against a schema whose tools take nothing.
        let others: Vec<&Loaded> = self
            .policies
            .iter()
            .filter(|l| {
                !tools
                    .iter()
                    .any(|t| applies(&l.policy, Kind::Tool(&t.name)))
            })
            .collect();
        if !others.is_empty() {
            let none = ToolArgs::of(&serde_json::Map::new());
            let schema = Schema::from_json_value(schema_json(&none.schema_json(), &self.claims))
                .map_err(|e| CedarError::Schema {
                    tool: String::new(),
                    message: e.to_string(),
                })?;
            problems.check(&others, &schema, None);
        }
        problems.into_result(|id| {
            self.policies
                .iter()
                .find(|l| AsRef::<str>::as_ref(l.policy.id()) == id)
        })?;
        let group = |kind| {
            let applicable = self.matching(kind);
            (!applicable.is_empty()).then(|| set_of(&applicable))
        };
        Ok(Cedar {
            inner: Arc::new(Stage {
                id: NEXT_STAGE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                tools: governed,
                resources: group(Kind::Resource),
                prompts: group(Kind::Prompt),
                // No tool is named "\0": a scope that admits it admits every tool.
                every_tool: self
                    .policies
                    .iter()
                    .any(|l| applies(&l.policy, Kind::Tool("\0"))),
                policies: self
                    .policies
                    .iter()
                    .map(|l| {
                        let info = Info {
                            forbid: l.policy.effect() == cedar_policy::Effect::Forbid,
                            scopes: l.scopes.clone(),
                        };
                        (l.policy.id().clone(), info)
                    })
                    .collect(),
                claims: self.claims.clone(),
                authorizer: Authorizer::new(),
                names: Names::new(),
                schemas,
            }),
        })
    }

    /// The policies whose scope admits `kind`.
    fn matching(&self, kind: Kind<'_>) -> Vec<&Loaded> {
        self.policies
            .iter()
            .filter(|l| applies(&l.policy, kind))
            .collect()
    }
}

/// Whether one of `texts` may use `word` (`context`, `arguments`) as a whole value rather
/// than read one of its members (`.x`, `["x"]`, `has x`): then nothing may be left out of
/// it. Conservative: any use of the word not followed by one of those counts.
fn whole_read(texts: &[String], word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    texts.iter().any(|text| {
        text.match_indices(word).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let rest = &text[i + word.len()..];
            if before.is_some_and(ident) || rest.chars().next().is_some_and(ident) {
                return false; // inside a longer name
            }
            let rest = rest.trim_start();
            !(rest.starts_with('.') || rest.starts_with('[') || rest.starts_with("has "))
        })
    })
}

fn set_of(policies: &[&Loaded]) -> PolicySet {
    // Ids are unique (checked as the policies were added), so this cannot fail.
    PolicySet::from_policies(policies.iter().map(|l| l.policy.clone())).unwrap_or_default()
}

/// The problems found so far, each once, with the tools it was found for.
#[derive(Default)]
struct Problems {
    /// (policy, offset, message) -> (help, tools it was found for, tools checked)
    found: BTreeMap<(String, usize, String), Found>,
    /// How many tools each policy was checked for.
    checked: HashMap<String, usize>,
}

struct Found {
    help: Option<String>,
    tools: Vec<String>,
}

impl Problems {
    /// Validates `policies` against `schema` (the schema of `tool`, whose arguments are
    /// `args`, if any).
    fn check(&mut self, policies: &[&Loaded], schema: &Schema, tool: Option<(&str, &ToolArgs)>) {
        for l in policies {
            *self.checked.entry(l.policy.id().to_string()).or_default() += 1;
        }
        let set = set_of(policies);
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for error in result.validation_errors() {
            let policy = error.policy_id().to_string();
            let message = error.to_string();
            let message = message
                .strip_prefix(&format!("for policy `{policy}`, "))
                .unwrap_or(&message)
                .to_owned();
            let offset = first_offset(error);
            let mut help = error.help().map(|h| h.to_string());
            if let Some((_, args)) = tool
                && let Some(omitted) = args
                    .omitted
                    .iter()
                    .find(|o| message.contains(&format!("`arguments.{}`", o.path)))
            {
                help = Some(format!(
                    "argument `{}` is not in the tool's Cedar type: {}",
                    omitted.path, omitted.reason
                ));
            }
            if message.contains("attribute `arguments` in context for Action::\"resources/read\"")
                || message.contains("attribute `arguments` in context for Action::\"prompts/get\"")
            {
                help = Some(
                    "`context.arguments` is a tools/call's: scope the policy with `action == Action::\"tools/call\"`"
                        .to_owned(),
                );
            }
            let found = self
                .found
                .entry((policy, offset, message))
                .or_insert(Found {
                    help,
                    tools: Vec::new(),
                });
            if let Some((name, _)) = tool {
                found.tools.push(name.to_owned());
            }
        }
    }

    fn into_result<'a>(
        self,
        loaded: impl Fn(&str) -> Option<&'a Loaded>,
    ) -> Result<(), CedarError> {
        if self.found.is_empty() {
            return Ok(());
        }
        let problems = self
            .found
            .into_iter()
            .map(|((policy, offset, message), found)| {
                let position = loaded(&policy).map_or_else(
                    || SourcePosition::at("?", "", 0),
                    |l| SourcePosition::at(&l.position.source, &l.text, offset),
                );
                // A problem found for only some of the tools the policy applies to is
                // about those tools' arguments: name the first.
                let everywhere =
                    found.tools.len() == self.checked.get(&policy).copied().unwrap_or(0);
                PolicyProblem {
                    tool: (!everywhere || found.tools.len() == 1)
                        .then(|| found.tools.first().cloned())
                        .flatten(),
                    policy,
                    position,
                    message,
                    help: found.help,
                }
            })
            .collect();
        Err(CedarError::Invalid(problems))
    }
}

/// The Cedar schema (JSON format) of the principal model, with `arguments` as the
/// context of `tools/call`.
fn schema_json(arguments: &Value, claims: &[(String, ClaimType)]) -> Value {
    let optional = |ty: Value| {
        let mut ty = ty;
        ty["required"] = Value::Bool(false);
        ty
    };
    let string = || json!({ "type": "String" });
    let strings = || json!({ "type": "Set", "element": { "type": "String" } });
    let claim_attributes: serde_json::Map<String, Value> = claims
        .iter()
        .map(|(name, ty)| {
            let ty = match ty {
                ClaimType::String => string(),
                ClaimType::Long => json!({ "type": "Long" }),
                ClaimType::Bool => json!({ "type": "Boolean" }),
                ClaimType::StringSet => strings(),
            };
            (name.clone(), optional(ty))
        })
        .collect();
    let boolean = || json!({ "type": "Boolean" });
    let long = || json!({ "type": "Long" });
    let times = || {
        json!({ "type": "Record", "attributes": {
            "now": long(), "token_age": long(),
        }})
    };
    let mut call_context = times();
    call_context["attributes"]["arguments"] = arguments.clone();
    let applies = |resource: &str, context: Value| {
        json!({ "appliesTo": {
            "principalTypes": ["Agent"], "resourceTypes": [resource], "context": context,
        }})
    };
    json!({ "": {
        "entityTypes": {
            "Agent": { "shape": { "type": "Record", "attributes": {
                "user": optional(string()),
                "client": optional(string()),
                "issuer": string(),
                "delegated": boolean(),
                "depth": long(),
                "chain": strings(),
                "origin": optional(string()),
                "scopes": strings(),
                "claims": { "type": "Record", "attributes": claim_attributes },
            }}},
            "Tool": { "shape": { "type": "Record", "attributes": {
                "name": string(),
                "readOnlyHint": boolean(),
                "destructiveHint": boolean(),
                "idempotentHint": boolean(),
                "openWorldHint": boolean(),
            }}},
            "Resource": { "shape": { "type": "Record", "attributes": { "uri": string() }}},
            "Prompt": { "shape": { "type": "Record", "attributes": { "name": string() }}},
        },
        "actions": {
            CALL_TOOL: applies("Tool", call_context),
            READ_RESOURCE: applies("Resource", times()),
            GET_PROMPT: applies("Prompt", times()),
        },
    }})
}

/// `Type::"id"`. Parsing a type name runs Cedar's parser (microseconds): the request
/// path uses the names [`Names`] parsed once.
pub(super) fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name(ty), EntityId::new(id))
}

fn type_name(ty: &str) -> EntityTypeName {
    // The fixed names of this model: a parse failure is impossible.
    ty.parse()
        .unwrap_or_else(|_| unreachable!("{ty} is a valid type name"))
}

/// The entity type names and actions of the model, parsed once.
pub(super) struct Names {
    pub(super) agent: EntityTypeName,
    pub(super) resource: EntityTypeName,
    pub(super) prompt: EntityTypeName,
    pub(super) call_tool: EntityUid,
    pub(super) read_resource: EntityUid,
    pub(super) get_prompt: EntityUid,
}

impl Names {
    pub(super) fn new() -> Names {
        Names {
            agent: type_name("Agent"),
            resource: type_name("Resource"),
            prompt: type_name("Prompt"),
            call_tool: uid("Action", CALL_TOOL),
            read_resource: uid("Action", READ_RESOURCE),
            get_prompt: uid("Action", GET_PROMPT),
        }
    }
}

/// A tool's entity: its name and annotations, with MCP's defaults for those it leaves
/// out (read-only false, destructive true, idempotent false, open-world true).
fn tool_entity(tool: &Tool) -> Result<Entity, CedarError> {
    let a = tool.annotations.as_ref();
    let hint = |get: fn(&rmcp::model::ToolAnnotations) -> Option<bool>, default| {
        RestrictedExpression::new_bool(a.and_then(get).unwrap_or(default))
    };
    let attributes = [
        (
            "name".to_owned(),
            RestrictedExpression::new_string(tool.name.to_string()),
        ),
        ("readOnlyHint".to_owned(), hint(|a| a.read_only_hint, false)),
        (
            "destructiveHint".to_owned(),
            hint(|a| a.destructive_hint, true),
        ),
        (
            "idempotentHint".to_owned(),
            hint(|a| a.idempotent_hint, false),
        ),
        (
            "openWorldHint".to_owned(),
            hint(|a| a.open_world_hint, true),
        ),
    ];
    Entity::new(
        uid("Tool", &tool.name),
        attributes.into_iter().collect(),
        HashSet::new(),
    )
    .map_err(|e| CedarError::Schema {
        tool: tool.name.to_string(),
        message: e.to_string(),
    })
}
