use serde_json::json;

use super::*;
use crate::policy::cedar::numbers::{decimal, decimal_expression};

#[derive(schemars::JsonSchema, serde::Deserialize)]
#[allow(dead_code)]
struct Refund {
    order: String,
    amount: f64,
    count: u32,
    note: Option<String>,
    tags: Vec<String>,
    address: Address,
    maybe: Option<Address>,
    anything: serde_json::Value,
    map: std::collections::HashMap<String, String>,
}

#[derive(schemars::JsonSchema, serde::Deserialize)]
#[allow(dead_code)]
struct Address {
    city: String,
    zip: Option<u16>,
}

fn refund() -> ToolArgs {
    let schema = serde_json::to_value(schemars::schema_for!(Refund)).unwrap();
    ToolArgs::of(schema.as_object().unwrap())
}

fn field<'a>(fields: &'a [Field], name: &str) -> &'a Field {
    fields.iter().find(|f| f.name == name).unwrap()
}

#[test]
fn schemars_schemas_map_to_cedar_types() {
    let args = refund();
    assert_eq!(field(&args.fields, "order").ty, ArgType::String);
    assert!(field(&args.fields, "order").required);
    assert_eq!(field(&args.fields, "amount").ty, ArgType::Decimal);
    assert_eq!(field(&args.fields, "count").ty, ArgType::Long);
    let note = field(&args.fields, "note");
    assert_eq!((note.ty.clone(), note.required), (ArgType::String, false));
    assert_eq!(
        field(&args.fields, "tags").ty,
        ArgType::Set(Box::new(ArgType::String))
    );
    let ArgType::Record(address, _) = &field(&args.fields, "address").ty else {
        panic!("address is a record")
    };
    assert!(field(address, "city").required);
    assert!(!field(address, "zip").required);
    assert!(!field(&args.fields, "maybe").required);
    let omitted: Vec<&str> = args.omitted.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(omitted, ["anything", "map"]);
}

#[test]
fn unions_tuples_and_recursion_are_omitted_with_a_reason() {
    let schema = json!({
        "type": "object",
        "properties": {
            "either": { "type": ["string", "integer"] },
            "one_of": { "oneOf": [{ "type": "string" }, { "type": "integer" }] },
            "tuple": { "type": "array", "prefixItems": [{ "type": "string" }] },
            "node": { "$ref": "#/$defs/Node" },
            "missing": { "$ref": "#/$defs/Nope" },
            "color": { "enum": ["red", "green"] },
        },
        "$defs": { "Node": { "type": "object", "properties": { "next": { "$ref": "#/$defs/Node" } } } },
    });
    let args = ToolArgs::of(schema.as_object().unwrap());
    let omitted: Vec<&str> = args.omitted.iter().map(|o| o.path.as_str()).collect();
    assert!(omitted.contains(&"either"), "{omitted:?}");
    assert!(omitted.contains(&"one_of"));
    assert!(omitted.contains(&"tuple"));
    assert!(omitted.contains(&"missing"));
    assert!(
        omitted.iter().any(|p| p.starts_with("node.next")),
        "{omitted:?}"
    );
    assert_eq!(field(&args.fields, "color").ty, ArgType::String);
}

#[test]
fn values_convert_or_say_where_they_are_wrong() {
    let args = refund();
    let good = json!({
        "order": "A-1", "amount": 99.5, "count": 3, "tags": ["a", "b"],
        "address": { "city": "Oslo" }, "note": null, "extra": [1, 2, 3],
    });
    assert!(args.convert(good.as_object()).is_ok());
    let cases = [
        (
            json!({ "order": 1 }),
            "arguments.order",
            "expected a string, found a number",
        ),
        (
            json!({ "order": "x", "amount": "5", "count": 1, "tags": [], "address": { "city": "c" } }),
            "arguments.amount",
            "expected a number",
        ),
        (
            json!({ "order": "x", "amount": 0.00001, "count": 1, "tags": [], "address": { "city": "c" } }),
            "arguments.amount",
            "not a Cedar decimal",
        ),
        (
            json!({ "order": "x", "amount": 1, "count": 1.5, "tags": [], "address": { "city": "c" } }),
            "arguments.count",
            "not an integer",
        ),
        (
            json!({ "order": "x", "amount": 1, "count": 1, "tags": [1], "address": { "city": "c" } }),
            "arguments.tags[0]",
            "expected a string",
        ),
        (
            json!({ "order": "x", "amount": 1, "count": 1, "tags": [], "address": {} }),
            "arguments.address.city",
            "required argument is missing",
        ),
    ];
    for (value, path, problem) in cases {
        let e = args.convert(value.as_object()).unwrap_err();
        assert_eq!(e.path, path, "{value}");
        assert!(e.problem.contains(problem), "{value}: {e}");
    }
}

#[test]
fn numbers_become_decimals_only_when_cedar_holds_them_exactly() {
    let n = |v: serde_json::Value| match v {
        serde_json::Value::Number(n) => {
            let text = decimal(&n);
            // The expression built from Cedar's tree is the one Cedar's own constructor
            // makes of the same text.
            assert_eq!(
                decimal_expression(&n),
                text.as_ref().map(RestrictedExpression::new_decimal),
                "{n}"
            );
            text
        }
        _ => unreachable!(),
    };
    assert_eq!(n(json!(100)).as_deref(), Some("100.0"));
    assert_eq!(n(json!(100.0)).as_deref(), Some("100.0"));
    assert_eq!(n(json!(-0.25)).as_deref(), Some("-0.25"));
    assert_eq!(n(json!(-7)).as_deref(), Some("-7.0"));
    assert_eq!(n(json!(12.3456)).as_deref(), Some("12.3456"));
    assert_eq!(n(json!(12.34567)), None);
    assert_eq!(n(json!(1e300)), None);
    assert_eq!(n(json!(i64::MAX)), None);
    assert_eq!(n(json!(u64::MAX)), None);
    assert_eq!(
        n(json!(922337203685477_i64)).as_deref(),
        Some("922337203685477.0")
    );
    assert_eq!(
        n(json!(-922337203685477_i64)).as_deref(),
        Some("-922337203685477.0")
    );
    assert_eq!(n(json!(922337203685478_i64)), None);
    assert_eq!(n(json!(-922337203685478_i64)), None);
    // The fraction counts toward the range with the whole part's sign.
    assert_eq!(
        n(json!(922337203685477.5)).as_deref(),
        Some("922337203685477.5")
    );
    assert_eq!(n(json!(922337203685477.9)), None);
    assert_eq!(
        n(json!(-922337203685477.5)).as_deref(),
        Some("-922337203685477.5")
    );
    assert_eq!(n(json!(-922337203685477.9)), None);
}

#[test]
fn huge_arguments_are_refused_with_a_bound_not_converted() {
    let schema = json!({
        "type": "object",
        "properties": { "items": { "type": "array", "items": { "type": "integer" } },
                        "text": { "type": "string" } },
    });
    let args = ToolArgs::of(schema.as_object().unwrap());
    let many: Vec<u32> = (0..MAX_VALUES as u32 + 1).collect();
    let e = args
        .convert(json!({ "items": many }).as_object())
        .unwrap_err();
    assert!(e.problem.contains("too large"), "{e}");
    let long = "x".repeat(MAX_STRING_BYTES + 1);
    let e = args
        .convert(json!({ "text": long }).as_object())
        .unwrap_err();
    assert!(e.problem.contains("too large"), "{e}");
    // Members the type does not have are never converted, whatever their size.
    let ignored = json!({ "other": many });
    assert!(args.convert(ignored.as_object()).is_ok());
}

#[test]
fn defaults_fill_absent_arguments_and_closed_objects_refuse_others() {
    let schema = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "folder": { "type": "string", "default": "shared" },
            "loose": { "type": ["string", "integer"] },
        },
    });
    let args = ToolArgs::of(schema.as_object().unwrap());
    // The handler will write into "shared": so do the policies see it.
    assert!(args.convert(json!({}).as_object()).is_ok());
    assert_eq!(args.fields[0].default, Some(json!("shared")));
    // A member the schema does not admit is refused, not dropped; one it admits but
    // Cedar cannot type is left out.
    let e = args.convert(json!({ "dir": "x" }).as_object()).unwrap_err();
    assert_eq!(e.path, "arguments.dir");
    assert!(args.convert(json!({ "loose": 3 }).as_object()).is_ok());
}

#[test]
fn a_root_ref_is_followed_and_ref_trees_are_bounded() {
    let schema = json!({
        "$ref": "#/$defs/Args",
        "$defs": { "Args": { "type": "object", "required": ["folder"],
                             "properties": { "folder": { "type": "string" } } } },
    });
    let args = ToolArgs::of(schema.as_object().unwrap());
    assert_eq!(args.fields.len(), 1, "{args:?}");
    assert!(args.fields[0].required);
    // Each level refers to itself five times: without a bound, 5^16 nodes.
    let node = json!({ "type": "object", "properties": {
        "a": { "$ref": "#/$defs/N" }, "b": { "$ref": "#/$defs/N" }, "c": { "$ref": "#/$defs/N" },
        "d": { "$ref": "#/$defs/N" }, "e": { "$ref": "#/$defs/N" } } });
    let schema = json!({ "type": "object", "properties": { "n": { "$ref": "#/$defs/N" } },
                         "$defs": { "N": node } });
    let args = ToolArgs::of(schema.as_object().unwrap());
    assert!(
        args.omitted.iter().any(|o| o.reason.contains("too large")),
        "{:?}",
        args.omitted.len()
    );
}
