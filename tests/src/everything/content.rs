//! What the everything server lists and returns, as the JSON each scenario of the
//! conformance suite describes (the scenario named beside each item).

use rmcp::model::Tool;
use serde_json::{Value, json};

/// A 1x1 red PNG.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

/// A WAV file: 8 kHz, mono, 8 bits, eight samples of silence.
const WAV: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

/// The tools that send requests to the client (sampling, elicitation).
pub(crate) const INTERACTIVE_TOOLS: &[&str] = &[
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
];

/// The URIs and URI templates of the resources.
pub(crate) const RESOURCE_URIS: &[&str] = &[
    "test://static-text",
    "test://static-binary",
    "test://watched-resource",
    "test://template/{id}/data",
];

/// The names of the prompts.
pub(crate) const PROMPT_NAMES: &[&str] = &[
    "test_simple_prompt",
    "test_prompt_with_arguments",
    "test_prompt_with_embedded_resource",
    "test_prompt_with_image",
];

fn no_arguments() -> Value {
    json!({ "type": "object", "properties": {} })
}

fn tool(name: &str, description: &str, input_schema: Value) -> Value {
    json!({ "name": name, "description": description, "inputSchema": input_schema })
}

/// Every tool (`tools-list`, and the scenario named in each description).
pub(crate) fn tools() -> Vec<Tool> {
    let string_argument = |name: &str, description: &str| {
        json!({
            "type": "object",
            "properties": { name: { "type": "string", "description": description } },
            "required": [name],
        })
    };
    let tools = json!([
        tool(
            "test_simple_text",
            "Returns simple text (tools-call-simple-text)",
            no_arguments()
        ),
        tool(
            "test_image_content",
            "Returns an image (tools-call-image)",
            no_arguments()
        ),
        tool(
            "test_audio_content",
            "Returns audio (tools-call-audio)",
            no_arguments()
        ),
        tool(
            "test_embedded_resource",
            "Returns an embedded resource (tools-call-embedded-resource)",
            no_arguments()
        ),
        tool(
            "test_multiple_content_types",
            "Returns text, an image and a resource (tools-call-mixed-content)",
            no_arguments()
        ),
        tool(
            "test_tool_with_logging",
            "Sends three log messages while it runs (tools-call-with-logging)",
            no_arguments()
        ),
        tool(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100 (tools-call-with-progress)",
            no_arguments()
        ),
        tool(
            "test_error_handling",
            "Always fails, as a tool error (tools-call-error)",
            no_arguments()
        ),
        tool(
            "test_sampling",
            "Asks the client's LLM (tools-call-sampling)",
            string_argument("prompt", "The prompt to send to the LLM")
        ),
        tool(
            "test_elicitation",
            "Asks the user for a name and an email address (tools-call-elicitation)",
            string_argument("message", "The message to show the user")
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Asks the user with a default for every primitive type (elicitation-sep1034-defaults)",
            no_arguments()
        ),
        tool(
            "test_elicitation_sep1330_enums",
            "Asks the user with every kind of enum (elicitation-sep1330-enums)",
            no_arguments()
        ),
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features (json-schema-2020-12)",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": {
                            "street": { "type": "string" },
                            "city": { "type": "string" },
                        },
                    },
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                },
                "additionalProperties": false,
            })
        ),
        tool(
            "test_reconnection",
            "Closes its SSE stream before answering, on the stream the client resumes \
             (server-sse-polling)",
            no_arguments()
        ),
    ]);
    serde_json::from_value(tools).expect("the tools fit rmcp's model")
}

/// The result of a tool that always answers the same, if `name` is one.
pub(crate) fn fixed_result(name: &str) -> Option<Value> {
    let content = match name {
        "test_simple_text" => json!([
            { "type": "text", "text": "This is a simple text response for testing." }
        ]),
        "test_image_content" => json!([{ "type": "image", "data": PNG, "mimeType": "image/png" }]),
        "test_audio_content" => json!([{ "type": "audio", "data": WAV, "mimeType": "audio/wav" }]),
        "test_embedded_resource" => json!([{
            "type": "resource",
            "resource": {
                "uri": "test://embedded-resource",
                "mimeType": "text/plain",
                "text": "This is an embedded resource content.",
            },
        }]),
        "test_multiple_content_types" => json!([
            { "type": "text", "text": "Multiple content types test:" },
            { "type": "image", "data": PNG, "mimeType": "image/png" },
            {
                "type": "resource",
                "resource": {
                    "uri": "test://mixed-content-resource",
                    "mimeType": "application/json",
                    "text": json!({ "test": "data", "value": 123 }).to_string(),
                },
            },
        ]),
        "test_error_handling" => {
            return Some(json!({
                "isError": true,
                "content": [{
                    "type": "text",
                    "text": "This tool intentionally returns an error for testing",
                }],
            }));
        }
        "json_schema_2020_12_tool" => json!([
            { "type": "text", "text": "JSON Schema 2020-12 tool called" }
        ]),
        _ => return None,
    };
    Some(json!({ "content": content }))
}

/// The form of `test_elicitation` (tools-call-elicitation).
pub(crate) fn user_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": { "type": "string", "description": "User's response" },
            "email": { "type": "string", "description": "User's email address" },
        },
        "required": ["username", "email"],
    })
}

/// The form of `test_elicitation_sep1034_defaults`: a default for each primitive type.
pub(crate) fn defaults_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true },
        },
    })
}

/// The form of `test_elicitation_sep1330_enums`: the five kinds of enum of SEP-1330.
pub(crate) fn enums_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": [
                    { "const": "value1", "title": "First Option" },
                    { "const": "value2", "title": "Second Option" },
                    { "const": "value3", "title": "Third Option" },
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled single-select (enumNames)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {
                    "anyOf": [
                        { "const": "value1", "title": "First Choice" },
                        { "const": "value2", "title": "Second Choice" },
                        { "const": "value3", "title": "Third Choice" },
                    ],
                },
            },
        },
    })
}

/// The direct resources (resources-list).
pub(crate) fn resources() -> Value {
    json!([
        {
            "uri": "test://static-text",
            "name": "static-text",
            "description": "A static text resource (resources-read-text)",
            "mimeType": "text/plain",
        },
        {
            "uri": "test://static-binary",
            "name": "static-binary",
            "description": "A static binary resource (resources-read-binary)",
            "mimeType": "image/png",
        },
        {
            "uri": "test://watched-resource",
            "name": "watched-resource",
            "description": "A resource to subscribe to (resources-subscribe)",
            "mimeType": "text/plain",
        },
    ])
}

/// The resource templates (resources-templates-read).
pub(crate) fn resource_templates() -> Value {
    json!([{
        "uriTemplate": "test://template/{id}/data",
        "name": "template-data",
        "description": "Data for an id (resources-templates-read)",
        "mimeType": "application/json",
    }])
}

/// The contents of the resource at `uri`, if there is one.
pub(crate) fn read(uri: &str) -> Option<Value> {
    let contents = match uri {
        "test://static-text" => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        }),
        "test://static-binary" => json!({ "uri": uri, "mimeType": "image/png", "blob": PNG }),
        "test://watched-resource" => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This resource is watched for updates.",
        }),
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")
                .filter(|id| !id.is_empty() && !id.contains('/'))?;
            json!({
                "uri": uri,
                "mimeType": "application/json",
                "text": json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                    .to_string(),
            })
        }
    };
    Some(contents)
}

/// The prompts (prompts-list).
pub(crate) fn prompts() -> Value {
    let argument = |name: &str, description: &str| json!({ "name": name, "description": description, "required": true });
    json!([
        { "name": "test_simple_prompt", "description": "A prompt without arguments (prompts-get-simple)" },
        {
            "name": "test_prompt_with_arguments",
            "description": "A prompt with two arguments (prompts-get-with-args)",
            "arguments": [
                argument("arg1", "First test argument"),
                argument("arg2", "Second test argument"),
            ],
        },
        {
            "name": "test_prompt_with_embedded_resource",
            "description": "A prompt embedding a resource (prompts-get-embedded-resource)",
            "arguments": [argument("resourceUri", "URI of the resource to embed")],
        },
        { "name": "test_prompt_with_image", "description": "A prompt with an image (prompts-get-with-image)" },
    ])
}

/// The messages of a prompt without arguments, if `name` is one.
pub(crate) fn fixed_prompt(name: &str) -> Option<Value> {
    match name {
        "test_simple_prompt" => Some(json!([{
            "role": "user",
            "content": { "type": "text", "text": "This is a simple prompt for testing." },
        }])),
        "test_prompt_with_image" => Some(json!([
            { "role": "user", "content": { "type": "image", "data": PNG, "mimeType": "image/png" } },
            { "role": "user", "content": { "type": "text", "text": "Please analyze the image above." } },
        ])),
        _ => None,
    }
}

/// The messages of `test_prompt_with_arguments`.
pub(crate) fn prompt_with_arguments(arg1: &str, arg2: &str) -> Value {
    json!([{
        "role": "user",
        "content": {
            "type": "text",
            "text": format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
        },
    }])
}

/// The messages of `test_prompt_with_embedded_resource`.
pub(crate) fn prompt_with_embedded_resource(uri: &str) -> Value {
    json!([
        {
            "role": "user",
            "content": {
                "type": "resource",
                "resource": {
                    "uri": uri,
                    "mimeType": "text/plain",
                    "text": "Embedded resource content for testing.",
                },
            },
        },
        {
            "role": "user",
            "content": { "type": "text", "text": "Please process the embedded resource above." },
        },
    ])
}

/// Completions of `argument` starting with `prefix`, for a prompt's arguments or the
/// template's `id` (completion-complete).
pub(crate) fn completions(reference: &Value, argument: &str, prefix: &str) -> Vec<String> {
    let candidates: &[&str] = match (reference["type"].as_str(), argument) {
        (Some("ref/prompt"), "arg1" | "arg2") => &["paris", "park", "party", "test", "testing"],
        (Some("ref/prompt"), "resourceUri") => &["test://static-text", "test://static-binary"],
        (Some("ref/resource"), "id") => &["123", "456"],
        _ => &[],
    };
    candidates
        .iter()
        .filter(|candidate| candidate.starts_with(prefix))
        .map(|candidate| (*candidate).to_owned())
        .collect()
}
