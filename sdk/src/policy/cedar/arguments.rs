//! A tool's arguments as Cedar sees them: the JSON Schema of a tool's `inputSchema`
//! mapped to a Cedar type ([`ArgType`]), that type written into a Cedar schema, and a
//! call's JSON arguments converted to Cedar values of that type, within bounds.
//!
//! The mapping (documented in docs/policy.md, "JSON Schema to Cedar"):
//!
//! | JSON Schema | Cedar |
//! |---|---|
//! | `boolean` | `Bool` |
//! | `integer` | `Long` (a value outside i64 is refused) |
//! | `number` | `decimal` (at most 4 decimal places; anything else is refused) |
//! | `string` (any `format`, `enum` of strings, `const` string) | `String` |
//! | `array` with one `items` schema | `Set` of the item type (order and repeats are lost) |
//! | `object` with `properties` | a record; `required` members required, the rest optional |
//! | `[T, "null"]`, `anyOf`/`oneOf` of `T` and `null` | `T`, optional (`null` is absent) |
//! | `$ref` to `#/$defs/...` or `#/definitions/...`, `allOf` of one schema | what it names |
//!
//! Anything else (several types, `anyOf` of several schemas, maps with only
//! `additionalProperties`, tuples, recursion deeper than [`MAX_DEPTH`]) cannot be
//! expressed: the argument is left out of the tool's Cedar type, so a policy that names
//! it is refused at start-up, and [`ToolArgs::omitted`] says why.

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Value};

use super::numbers::{decimal_expression, integer};
use crate::json::kind_of;

/// How deep a schema (and a value) may nest: `$ref`s, records and sets together.
pub(crate) const MAX_DEPTH: usize = 16;

/// The most values (every scalar, set and record counts one) one call's arguments may
/// hand to Cedar.
pub(crate) const MAX_VALUES: usize = 10_000;

/// The most bytes of strings one call's arguments may hand to Cedar.
pub(crate) const MAX_STRING_BYTES: usize = 1 << 20;

/// A Cedar type an argument can have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgType {
    Bool,
    Long,
    Decimal,
    String,
    Set(Box<ArgType>),
    /// A record, and for an object whose schema admits no other members
    /// (`additionalProperties: false`) the names it admits.
    Record(Vec<Field>, Closed),
}

/// The member names a closed object admits (`None`: any).
pub(crate) type Closed = Option<Box<[String]>>;

/// A member of a record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) ty: ArgType,
    pub(crate) required: bool,
    /// The schema's `default`, which the handler will use when the member is absent: the
    /// policies see it too.
    pub(crate) default: Option<Value>,
}

/// An argument left out of a tool's Cedar type, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Omitted {
    /// Its path from `context.arguments`, e.g. `filter.tags`.
    pub(crate) path: String,
    pub(crate) reason: &'static str,
}

/// A tool's arguments as a Cedar record type, and what could not be expressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolArgs {
    pub(crate) fields: Vec<Field>,
    pub(crate) closed: Closed,
    pub(crate) omitted: Vec<Omitted>,
}

/// Why a call's arguments cannot be handed to Cedar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgumentError {
    /// Where, e.g. `arguments.amount`.
    pub(crate) path: String,
    pub(crate) problem: String,
}

impl std::fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

impl ToolArgs {
    /// The Cedar type of the arguments of a tool whose `inputSchema` is `schema`.
    pub(crate) fn of(schema: &Map<String, Value>) -> ToolArgs {
        let mut mapper = Mapper {
            root: schema,
            omitted: Vec::new(),
            nodes: 0,
        };
        let root = Value::Object(schema.clone());
        let (fields, closed) = if schema.contains_key("properties") {
            (mapper.fields(schema, "", 0), closed(schema))
        } else {
            // A root that is a `$ref` or an `allOf` names its object elsewhere.
            match mapper.map(&root, "", 0) {
                Ok((ArgType::Record(fields, closed), _)) => (fields, closed),
                Ok(_) => (Vec::new(), None),
                Err(reason) => {
                    if schema.contains_key("$ref") || schema.contains_key("allOf") {
                        mapper.omitted.push(Omitted {
                            path: "(all arguments)".to_owned(),
                            reason,
                        });
                    }
                    (Vec::new(), None)
                }
            }
        };
        ToolArgs {
            fields,
            closed,
            omitted: mapper.omitted,
        }
    }

    /// This type without the top-level members no text of `policies` names as a word of
    /// its own ([`names_word`]): what the policies can read of the arguments. A member
    /// left out is neither converted nor checked.
    pub(crate) fn named_in(&self, policies: &[String]) -> ToolArgs {
        let named = |name: &str| policies.iter().any(|p| names_word(p, name));
        ToolArgs {
            fields: self
                .fields
                .iter()
                .filter(|f| named(&f.name))
                .cloned()
                .collect(),
            closed: self.closed.clone(),
            omitted: self.omitted.clone(),
        }
    }

    /// The record type in Cedar's JSON schema format.
    pub(crate) fn schema_json(&self) -> Value {
        record_json(&self.fields)
    }

    /// `arguments` as a Cedar record of this type. Members the type does not have are
    /// left out; a member of the wrong type, a missing required member, or more than
    /// [`MAX_VALUES`] values or [`MAX_STRING_BYTES`] bytes of strings is an error.
    pub(crate) fn convert(
        &self,
        arguments: Option<&Map<String, Value>>,
    ) -> Result<RestrictedExpression, ArgumentError> {
        let empty = Map::new();
        let mut budget = Budget {
            values: MAX_VALUES,
            bytes: MAX_STRING_BYTES,
        };
        convert_record(
            &self.fields,
            self.closed.as_deref(),
            arguments.unwrap_or(&empty),
            &Path::Arguments,
            &mut budget,
            0,
        )
    }
}

/// Walks a JSON Schema, resolving local `$ref`s against its root.
struct Mapper<'a> {
    root: &'a Map<String, Value>,
    omitted: Vec<Omitted>,
    /// Schema nodes visited so far: bounded, as `$ref`s can make a small schema a large
    /// tree.
    nodes: usize,
}

/// The most schema nodes one tool's type is made of.
const MAX_TYPE_NODES: usize = 10_000;

/// The names a closed object schema admits.
fn closed(schema: &Map<String, Value>) -> Closed {
    if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
        return None;
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    Some(
        properties
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default(),
    )
}

/// A schema's type: the Cedar type, and whether `null` is also allowed.
type Mapped = Result<(ArgType, bool), &'static str>;

impl<'a> Mapper<'a> {
    /// The members of an object schema.
    fn fields(&mut self, schema: &'a Map<String, Value>, path: &str, depth: usize) -> Vec<Field> {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut fields = Vec::with_capacity(properties.len());
        for (name, member) in properties {
            let member_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            match self.map(member, &member_path, depth + 1) {
                Ok((ty, nullable)) => fields.push(Field {
                    name: name.clone(),
                    ty,
                    required: required.contains(&name.as_str()) && !nullable,
                    default: member.get("default").filter(|d| !d.is_null()).cloned(),
                }),
                Err(reason) => self.omitted.push(Omitted {
                    path: member_path,
                    reason,
                }),
            }
        }
        fields
    }

    fn map(&mut self, schema: &'a Value, path: &str, depth: usize) -> Mapped {
        self.nodes += 1;
        if self.nodes > MAX_TYPE_NODES {
            return Err("the schema is too large a tree to type (many nested $refs?)");
        }
        if depth > MAX_DEPTH {
            return Err("it nests deeper than Cedar types are generated for (recursive?)");
        }
        let Some(schema) = schema.as_object() else {
            return Err("its schema is not an object (`true` allows any value)");
        };
        if let Some(reference) = schema.get("$ref") {
            let target = reference
                .as_str()
                .and_then(|r| self.resolve(r))
                .ok_or("its $ref does not name a local definition")?;
            return self.map(target, path, depth + 1);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(alternatives) = schema.get(key) {
                return self.alternatives(key, alternatives, path, depth);
            }
        }
        match schema.get("type") {
            Some(Value::String(ty)) => self.typed(ty, schema, path, depth).map(|t| (t, false)),
            Some(Value::Array(types)) => {
                let nullable = types.iter().any(|t| t == "null");
                let others: Vec<&str> = types
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .collect();
                match others.as_slice() {
                    [ty] => self.typed(ty, schema, path, depth).map(|t| (t, nullable)),
                    _ => Err("it allows several types, and Cedar has no union type"),
                }
            }
            Some(_) => Err("its `type` is neither a string nor a list"),
            None if schema.contains_key("properties") => self
                .typed("object", schema, path, depth)
                .map(|t| (t, false)),
            None => match (schema.get("enum"), schema.get("const")) {
                (Some(Value::Array(values)), _) if values.iter().all(Value::is_string) => {
                    Ok((ArgType::String, false))
                }
                (_, Some(Value::String(_))) => Ok((ArgType::String, false)),
                _ => Err("its schema has no `type` (any value is allowed)"),
            },
        }
    }

    fn typed(
        &mut self,
        ty: &str,
        schema: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<ArgType, &'static str> {
        Ok(match ty {
            "boolean" => ArgType::Bool,
            "integer" => ArgType::Long,
            "number" => ArgType::Decimal,
            "string" => ArgType::String,
            "array" => match schema.get("items") {
                Some(items @ Value::Object(_)) => {
                    let (element, nullable) = self.map(items, path, depth + 1)?;
                    if nullable {
                        return Err("its items may be null, and a Cedar set holds no nulls");
                    }
                    ArgType::Set(Box::new(element))
                }
                _ => return Err("it is an array without one `items` schema (a tuple?)"),
            },
            "object" => {
                if !schema.contains_key("properties") {
                    return Err("it is an object without `properties` (a map)");
                }
                ArgType::Record(self.fields(schema, path, depth), closed(schema))
            }
            "null" => return Err("it can only be null"),
            _ => return Err("its `type` is not a JSON Schema type"),
        })
    }

    /// `anyOf` / `oneOf` of one schema and `null`, or `allOf` of one schema.
    fn alternatives(
        &mut self,
        key: &str,
        alternatives: &'a Value,
        path: &str,
        depth: usize,
    ) -> Mapped {
        let list = alternatives
            .as_array()
            .ok_or("its alternatives are not a list")?;
        let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
        let others: Vec<&Value> = list.iter().filter(|s| !is_null(s)).collect();
        let nullable = others.len() < list.len();
        match (key, others.as_slice()) {
            ("allOf", [one]) if !nullable => self.map(one, path, depth + 1),
            ("anyOf" | "oneOf", [one]) => self
                .map(one, path, depth + 1)
                .map(|(t, n)| (t, n || nullable)),
            _ => Err("it is one of several schemas, and Cedar has no union type"),
        }
    }

    /// The definition a local `$ref` names.
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        let mut target: Option<&'a Value> = None;
        let mut current: &'a Map<String, Value> = self.root;
        for part in pointer.split('/').skip(1) {
            let part = part.replace("~1", "/").replace("~0", "~");
            let next = current.get(&part)?;
            target = Some(next);
            current = match next.as_object() {
                Some(o) => o,
                None => break,
            };
        }
        target
    }
}

/// A type in Cedar's JSON schema format.
fn type_json(ty: &ArgType) -> Value {
    match ty {
        ArgType::Bool => serde_json::json!({ "type": "Boolean" }),
        ArgType::Long => serde_json::json!({ "type": "Long" }),
        ArgType::Decimal => serde_json::json!({ "type": "Extension", "name": "decimal" }),
        ArgType::String => serde_json::json!({ "type": "String" }),
        ArgType::Set(element) => {
            serde_json::json!({ "type": "Set", "element": type_json(element) })
        }
        ArgType::Record(fields, _) => record_json(fields),
    }
}

fn record_json(fields: &[Field]) -> Value {
    let attributes: Map<String, Value> = fields
        .iter()
        .map(|f| {
            let mut ty = type_json(&f.ty);
            ty["required"] = Value::Bool(f.required);
            (f.name.clone(), ty)
        })
        .collect();
    serde_json::json!({ "type": "Record", "attributes": attributes })
}

/// Whether `text` holds `word` as a word of its own (not inside a longer identifier: `text`
/// is not in `context`), or `word` is not an identifier and appears at all.
pub(crate) fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    if word.is_empty() || !word.chars().all(ident) {
        return text.contains(word);
    }
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Where a value is in the arguments, written out only for an error message.
#[derive(Clone, Copy)]
enum Path<'a> {
    Arguments,
    Member(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Arguments => f.write_str("arguments"),
            Path::Member(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// What a call's arguments may still hand to Cedar.
struct Budget {
    values: usize,
    bytes: usize,
}

impl Budget {
    fn take(&mut self, path: &Path<'_>, bytes: usize) -> Result<(), ArgumentError> {
        match (self.values.checked_sub(1), self.bytes.checked_sub(bytes)) {
            (Some(values), Some(bytes)) => {
                self.values = values;
                self.bytes = bytes;
                Ok(())
            }
            _ => Err(ArgumentError {
                path: path.to_string(),
                problem: format!(
                    "the arguments are too large for a policy decision (more than {MAX_VALUES} values or {MAX_STRING_BYTES} bytes of strings); send less"
                ),
            }),
        }
    }
}

fn wrong(path: &Path<'_>, expected: &str, value: &Value) -> ArgumentError {
    ArgumentError {
        path: path.to_string(),
        problem: format!("expected {expected}, found {}", kind_of(value)),
    }
}

fn convert(
    ty: &ArgType,
    value: &Value,
    path: &Path<'_>,
    budget: &mut Budget,
    depth: usize,
) -> Result<RestrictedExpression, ArgumentError> {
    if depth > MAX_DEPTH {
        return Err(ArgumentError {
            path: path.to_string(),
            problem: "nested too deeply".to_owned(),
        });
    }
    budget.take(path, value.as_str().map_or(0, str::len))?;
    Ok(match (ty, value) {
        (ArgType::Bool, Value::Bool(b)) => RestrictedExpression::new_bool(*b),
        (ArgType::Long, Value::Number(n)) => {
            RestrictedExpression::new_long(integer(n).ok_or_else(|| ArgumentError {
                path: path.to_string(),
                problem: format!("{n} is not an integer within the 64-bit range Cedar holds"),
            })?)
        }
        (ArgType::Decimal, Value::Number(n)) => {
            decimal_expression(n).ok_or_else(|| ArgumentError {
                path: path.to_string(),
                problem: format!(
                    "{n} is not a Cedar decimal (at most 4 decimal places, magnitude below 922337203685477)"
                ),
            })?
        }
        (ArgType::String, Value::String(s)) => RestrictedExpression::new_string(s.clone()),
        (ArgType::Set(element), Value::Array(items)) => {
            let mut converted = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = Path::Index(path, i);
                converted.push(convert(element, item, &item_path, budget, depth + 1)?);
            }
            RestrictedExpression::new_set(converted)
        }
        (ArgType::Record(fields, closed), Value::Object(members)) => {
            convert_record(fields, closed.as_deref(), members, path, budget, depth + 1)?
        }
        (ty, value) => {
            let expected = match ty {
                ArgType::Bool => "a boolean",
                ArgType::Long => "an integer",
                ArgType::Decimal => "a number",
                ArgType::String => "a string",
                ArgType::Set(_) => "an array",
                ArgType::Record(..) => "an object",
            };
            return Err(wrong(path, expected, value));
        }
    })
}

/// `members` as a record of `fields`: an absent member takes the schema's `default`
/// (the handler will), and a closed object refuses members it does not admit.
fn convert_record(
    fields: &[Field],
    closed: Option<&[String]>,
    members: &Map<String, Value>,
    path: &Path<'_>,
    budget: &mut Budget,
    depth: usize,
) -> Result<RestrictedExpression, ArgumentError> {
    if let Some(admitted) = closed
        && let Some(name) = members.keys().find(|k| !admitted.contains(k))
    {
        return Err(ArgumentError {
            path: Path::Member(path, name).to_string(),
            problem: "the tool takes no such argument (its schema admits no others)".to_owned(),
        });
    }
    let mut record = Vec::with_capacity(fields.len());
    for field in fields {
        let field_path = Path::Member(path, &field.name);
        let value = match members.get(&field.name) {
            None | Some(Value::Null) => field.default.as_ref(),
            Some(value) => Some(value),
        };
        match value {
            None if field.required => {
                return Err(ArgumentError {
                    path: field_path.to_string(),
                    problem: "this required argument is missing".to_owned(),
                });
            }
            None => {}
            Some(value) => {
                let converted = convert(&field.ty, value, &field_path, budget, depth)?;
                record.push((field.name.clone(), converted));
            }
        }
    }
    // Names are unique: they come from one JSON object's keys.
    RestrictedExpression::new_record(record).map_err(|e| ArgumentError {
        path: path.to_string(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
#[path = "arguments_tests.rs"]
mod tests;
