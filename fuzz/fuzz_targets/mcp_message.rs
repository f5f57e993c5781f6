//! The MCP JSON-RPC message parser on arbitrary bytes: it must never panic, an error must carry the code
//! JSON-RPC gives its kind, and a message it accepts must survive being written out and read back.
#![no_main]

use conduit_mcp::jsonrpc::{self, Message, ParseError};
use libfuzzer_sys::fuzz_target;

fn write(message: &Message) -> serde_json::Value {
    match message {
        Message::Request { id, method, params } => {
            let mut value = jsonrpc::request(id, method, params.clone().unwrap_or(serde_json::Value::Null));
            if params.is_none() {
                value.as_object_mut().unwrap().remove("params");
            }
            value
        }
        Message::Notification { method, params } => {
            let mut value = jsonrpc::notification(method, params.clone().unwrap_or(serde_json::Value::Null));
            if params.is_none() {
                value.as_object_mut().unwrap().remove("params");
            }
            value
        }
        Message::Response { id, outcome: Ok(result) } => jsonrpc::result(id, result.clone()),
        Message::Response { id, outcome: Err(error) } => jsonrpc::error(Some(id), error),
    }
}

fuzz_target!(|input: &[u8]| {
    match jsonrpc::parse(input) {
        Ok(message) => {
            let again = jsonrpc::parse(write(&message).to_string().as_bytes());
            assert_eq!(again.as_ref(), Ok(&message), "written back: {message:?}");
        }
        Err(e @ ParseError::Json(_)) => assert_eq!(e.code(), jsonrpc::PARSE_ERROR),
        Err(e) => assert_eq!(e.code(), jsonrpc::INVALID_REQUEST),
    }
});
