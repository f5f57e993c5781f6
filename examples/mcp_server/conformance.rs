//! The tools the MCP conformance suite's server scenarios call, offered with `--conformance`. Each does what
//! its scenario describes, so the suite exercises content types, logging, progress, errors, requests to the
//! client and the server closing a call's connection mid-call.

use conduit::mcp::{LogLevel, Tool, ToolContext, ToolOutcome, ToolResult};
use serde_json::{Value, json};
use std::time::Duration;

/// A 1x1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// Eight silent samples of 16-bit mono WAV.
const WAV: &str = "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YRAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn no_arguments() -> Value {
    json!({ "type": "object", "properties": {} })
}

fn fixed(name: &str, description: &str, result: ToolResult) -> Tool {
    Tool::new(name, description, no_arguments(), move |_: &ToolContext| Ok(result.clone()))
}

fn pause() {
    std::thread::sleep(Duration::from_millis(50));
}

fn string_argument<'a>(cx: &'a ToolContext, name: &str) -> Result<&'a str, String> {
    cx.arguments()[name].as_str().ok_or_else(|| format!("`{name}` must be a string"))
}

/// Sends `method` to the client if it declared `capability`, and returns its answer.
fn ask_client(cx: &ToolContext, capability: &str, method: &str, params: Value) -> Result<Value, String> {
    if cx.client_capabilities().get(capability).is_none() {
        return Err(format!("the client does not support {capability}"));
    }
    cx.request(method, params).map_err(|e| e.to_string())
}

fn elicitation_summary(answer: &Value) -> ToolOutcome {
    let action = answer["action"].as_str().unwrap_or("unknown");
    Ok(ToolResult::text(format!("Elicitation completed: action={action}, content={}", answer["content"])))
}

/// Every conformance tool.
pub fn tools() -> Vec<Tool> {
    vec![
        fixed(
            "test_simple_text",
            "Returns a fixed text.",
            ToolResult::text("This is a simple text response for testing."),
        ),
        fixed(
            "test_image_content",
            "Returns a 1x1 PNG.",
            ToolResult::content(vec![json!({ "type": "image", "data": PNG, "mimeType": "image/png" })]),
        ),
        fixed(
            "test_audio_content",
            "Returns a short WAV.",
            ToolResult::content(vec![json!({ "type": "audio", "data": WAV, "mimeType": "audio/wav" })]),
        ),
        fixed(
            "test_embedded_resource",
            "Returns an embedded text resource.",
            ToolResult::content(vec![json!({
                "type": "resource",
                "resource": {
                    "uri": "test://embedded-resource",
                    "mimeType": "text/plain",
                    "text": "This is an embedded resource content."
                }
            })]),
        ),
        fixed(
            "test_multiple_content_types",
            "Returns text, an image and a resource.",
            ToolResult::content(vec![
                json!({ "type": "text", "text": "Multiple content types test:" }),
                json!({ "type": "image", "data": PNG, "mimeType": "image/png" }),
                json!({
                    "type": "resource",
                    "resource": {
                        "uri": "test://mixed-content-resource",
                        "mimeType": "application/json",
                        "text": "{\"test\":\"data\",\"value\":123}"
                    }
                }),
            ]),
        ),
        Tool::new(
            "test_tool_with_logging",
            "Logs three messages while it runs.",
            no_arguments(),
            |cx: &ToolContext| {
                for (i, text) in
                    ["Tool execution started", "Tool processing data", "Tool execution completed"].iter().enumerate()
                {
                    if i > 0 {
                        pause();
                    }
                    cx.log(LogLevel::Info, json!(text)).map_err(|e| e.to_string())?;
                }
                Ok(ToolResult::text("Logging test completed"))
            },
        ),
        Tool::new("test_error_handling", "Always fails.", no_arguments(), |_: &ToolContext| {
            Err("This tool intentionally returns an error for testing".into())
        }),
        Tool::new(
            "test_tool_with_progress",
            "Reports progress 0, 50, 100 of 100.",
            no_arguments(),
            |cx: &ToolContext| {
                for (i, step) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if i > 0 {
                        pause();
                    }
                    cx.progress(step, Some(100.0), None).map_err(|e| e.to_string())?;
                }
                Ok(ToolResult::text("Progress test completed"))
            },
        ),
        Tool::new(
            "test_sampling",
            "Asks the client's model to complete a prompt.",
            json!({ "type": "object", "properties": { "prompt": { "type": "string" } }, "required": ["prompt"] }),
            |cx: &ToolContext| {
                let prompt = string_argument(cx, "prompt")?;
                let params = json!({
                    "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                    "maxTokens": 100
                });
                let answer = ask_client(cx, "sampling", "sampling/createMessage", params)?;
                let text = answer["content"]["text"].as_str().unwrap_or_default();
                Ok(ToolResult::text(format!("LLM response: {text}")))
            },
        ),
        Tool::new(
            "test_elicitation",
            "Asks the user for a name and an email address.",
            json!({ "type": "object", "properties": { "message": { "type": "string" } }, "required": ["message"] }),
            |cx: &ToolContext| {
                let message = string_argument(cx, "message")?;
                let params = json!({
                    "message": message,
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "username": { "type": "string", "description": "User's response" },
                            "email": { "type": "string", "description": "User's email address" }
                        },
                        "required": ["username", "email"]
                    }
                });
                let answer = ask_client(cx, "elicitation", "elicitation/create", params)?;
                Ok(ToolResult::text(format!(
                    "User response: action={}, content={}",
                    answer["action"], answer["content"]
                )))
            },
        ),
        Tool::new(
            "test_elicitation_sep1034_defaults",
            "Asks for input with a default for every primitive type.",
            no_arguments(),
            |cx: &ToolContext| {
                let params = json!({
                    "message": "Please review and update the form fields with defaults",
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "name": { "type": "string", "description": "User name", "default": "John Doe" },
                            "age": { "type": "integer", "description": "User age", "default": 30 },
                            "score": { "type": "number", "description": "User score", "default": 95.5 },
                            "status": { "type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active" },
                            "verified": { "type": "boolean", "description": "Verification status", "default": true }
                        }
                    }
                });
                elicitation_summary(&ask_client(cx, "elicitation", "elicitation/create", params)?)
            },
        ),
        Tool::new(
            "test_elicitation_sep1330_enums",
            "Asks for input with every kind of enum.",
            no_arguments(),
            |cx: &ToolContext| {
                let params = json!({
                    "message": "Please select options from the enum fields",
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
                            "titledSingle": { "type": "string", "oneOf": [
                                { "const": "value1", "title": "First Option" },
                                { "const": "value2", "title": "Second Option" },
                                { "const": "value3", "title": "Third Option" }
                            ] },
                            "legacyEnum": { "type": "string", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"] },
                            "untitledMulti": { "type": "array", "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
                            "titledMulti": { "type": "array", "items": { "anyOf": [
                                { "const": "value1", "title": "First Choice" },
                                { "const": "value2", "title": "Second Choice" },
                                { "const": "value3", "title": "Third Choice" }
                            ] } }
                        }
                    }
                });
                elicitation_summary(&ask_client(cx, "elicitation", "elicitation/create", params)?)
            },
        ),
        Tool::new(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
                    }
                },
                "properties": { "name": { "type": "string" }, "address": { "$ref": "#/$defs/address" } },
                "additionalProperties": false
            }),
            |cx: &ToolContext| Ok(ToolResult::text(format!("received {}", cx.arguments()))),
        ),
        Tool::new(
            "test_reconnection",
            "Closes its connection mid-call; the result arrives when the client resumes by GET.",
            no_arguments(),
            |cx: &ToolContext| {
                pause();
                cx.close_connection();
                pause();
                Ok(ToolResult::text("Reconnection test completed successfully"))
            },
        ),
    ]
}
