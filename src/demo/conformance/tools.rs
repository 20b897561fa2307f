//! The test tools. Those that only return content answer with JSON; those that talk to the
//! client while they run answer with an SSE stream: their notifications and requests, then the
//! result.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::content::image;
use super::{lock, reply, respond, sse, RpcError, Session, LEVELS};
use crate::app::body::Body;
use crate::proto::sse::message_event;

/// How long a tool waits for the client to answer a sampling or elicitation request (the
/// conformance client answers at once; a lost request should fail its scenario quickly).
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
const STEP: Duration = Duration::from_millis(50);
const WAV: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQgAAAAAAOgDAAAY/A==";

fn no_args(name: &str, description: &str) -> Value {
    json!({"name": name, "description": description, "inputSchema": {"type": "object", "properties": {}}})
}

fn one_string(name: &str, description: &str, arg: &str, arg_description: &str) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": {
            "type": "object",
            "properties": {arg: {"type": "string", "description": arg_description}},
            "required": [arg]
        }
    })
}

pub(super) fn list() -> Value {
    json!([
        no_args("test_simple_text", "Returns a simple text response."),
        no_args("test_image_content", "Returns a PNG image."),
        no_args("test_audio_content", "Returns a WAV audio clip."),
        no_args("test_embedded_resource", "Returns an embedded text resource."),
        no_args("test_multiple_content_types", "Returns text, an image and an embedded resource."),
        no_args("test_tool_with_logging", "Sends three log messages while it runs."),
        no_args("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100 while it runs."),
        no_args("test_error_handling", "Always fails, with a tool error result."),
        one_string("test_sampling", "Asks the client's LLM to answer a prompt.", "prompt", "The prompt to send to the LLM"),
        one_string("test_elicitation", "Asks the user for a username and an email address.", "message", "The message to show the user"),
        no_args("test_elicitation_sep1034_defaults", "Asks the user for fields that all have defaults (SEP-1034)."),
        no_args("test_elicitation_sep1330_enums", "Asks the user to pick from every kind of enum (SEP-1330)."),
        {
            "name": "json_schema_2020_12_tool",
            "description": "Takes input described with JSON Schema 2020-12 keywords; echoes it.",
            "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "$anchor": "addressDef",
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
                    }
                },
                "properties": {
                    "name": {"type": "string"},
                    "address": {"$ref": "#/$defs/address"},
                    "contact": {"anyOf": [{"type": "string", "format": "email"}, {"type": "string", "pattern": "^\\+[0-9]+$"}]},
                    "kind": {"enum": ["person", "company"]},
                    "vat": {"type": "string"}
                },
                "allOf": [{"required": ["name"]}],
                "if": {"properties": {"kind": {"const": "company"}}, "required": ["kind"]},
                "then": {"required": ["vat"]},
                "else": {"not": {"required": ["vat"]}},
                "additionalProperties": false
            }
        }
    ])
}

fn text(s: impl Into<String>) -> Value {
    json!({"type": "text", "text": s.into()})
}

fn content(items: Vec<Value>) -> Value {
    json!({"content": items})
}

/// A failed tool run: a result with `isError`, which the model gets to see.
fn tool_error(why: impl Into<String>) -> Value {
    json!({"content": [text(why)], "isError": true})
}

/// Tools that return content at once.
fn immediate(name: &str, args: &Value) -> Option<Value> {
    Some(match name {
        "test_simple_text" => content(vec![text("This is a simple text response for testing.")]),
        "test_image_content" => content(vec![image()]),
        "test_audio_content" => content(vec![
            json!({"type": "audio", "data": WAV, "mimeType": "audio/wav"}),
        ]),
        "test_embedded_resource" => content(vec![json!({"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content."
        }})]),
        "test_multiple_content_types" => content(vec![
            text("Multiple content types test:"),
            image(),
            json!({"type": "resource", "resource": {
                "uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": json!({"test": "data", "value": 123}).to_string()
            }}),
        ]),
        "test_error_handling" => tool_error("This tool intentionally returns an error for testing"),
        "json_schema_2020_12_tool" => content(vec![text(format!("Received: {args}"))]),
        _ => return None,
    })
}

const STREAMING: &[&str] = &[
    "test_tool_with_logging",
    "test_tool_with_progress",
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
];

/// Answers `tools/call`.
pub(super) fn call(session: Arc<Session>, id: Value, params: &Value) -> Response<Body> {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let args = params
        .get("arguments")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(result) = immediate(name, &args) {
        return respond(StatusCode::OK, Some(reply(&id, Ok(result))));
    }
    if !STREAMING.contains(&name) {
        let e = RpcError(-32602, format!("Unknown tool: {name}"), None);
        return respond(StatusCode::OK, Some(reply(&id, Err(e))));
    }
    let (tx, rx) = mpsc::channel(16);
    let run = Run {
        session,
        tx,
        progress_token: params.pointer("/_meta/progressToken").cloned(),
    };
    let name = name.to_owned();
    tokio::spawn(async move {
        let result = run.tool(&name, &args).await;
        run.send(reply(&id, Ok(result))).await;
    });
    sse(rx)
}

/// A tool running on an SSE stream.
struct Run {
    session: Arc<Session>,
    tx: mpsc::Sender<Bytes>,
    progress_token: Option<Value>,
}

impl Run {
    /// Sends one message on the stream; false when the client has gone.
    async fn send(&self, msg: Value) -> bool {
        self.tx.send(message_event(&msg.to_string())).await.is_ok()
    }

    async fn notify(&self, method: &str, params: Value) -> bool {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await
    }

    /// Sends a log message unless the session's level filters it out; false when the client
    /// has gone.
    async fn log(&self, level: &str, message: &str) -> bool {
        let rank = LEVELS.iter().position(|l| *l == level).unwrap_or(0);
        if rank < self.session.log_level.load(Ordering::Relaxed) {
            return true;
        }
        let params = json!({"level": level, "logger": "conformance", "data": message});
        self.notify("notifications/message", params).await
    }

    /// Reports progress if the caller asked for it (sent a progress token); false when the
    /// client has gone.
    async fn progress(&self, progress: u32, total: u32) -> bool {
        match &self.progress_token {
            Some(token) => {
                let params = json!({"progressToken": token, "progress": progress, "total": total});
                self.notify("notifications/progress", params).await
            }
            None => true,
        }
    }

    /// Sends a request to the client and waits for its answer (the `result`).
    async fn ask(&self, method: &str, params: Value) -> Result<Value, String> {
        let capability = method.split('/').next().unwrap_or(method);
        if self.session.client_caps.get(capability).is_none() {
            return Err(format!("the client does not support {capability}"));
        }
        let id = self.session.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.session.pending).insert(id, tx);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if !self.send(msg).await {
            lock(&self.session.pending).remove(&id);
            return Err("the client has gone".into());
        }
        let answer = tokio::time::timeout(ASK_TIMEOUT, rx).await;
        lock(&self.session.pending).remove(&id);
        match answer {
            Ok(Ok(msg)) => match msg.get("result") {
                Some(r) => Ok(r.clone()),
                None => Err(format!("the client refused {method}: {}", msg["error"])),
            },
            Ok(Err(_)) => Err("the session ended".into()),
            Err(_) => Err(format!("no answer to {method}")),
        }
    }

    async fn tool(&self, name: &str, args: &Value) -> Value {
        match name {
            "test_tool_with_logging" => {
                for (i, m) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .iter()
                .enumerate()
                {
                    if i > 0 {
                        tokio::time::sleep(STEP).await;
                    }
                    if !self.log("info", m).await {
                        break;
                    }
                }
                content(vec![text("Logging test completed.")])
            }
            "test_tool_with_progress" => {
                for (i, p) in [0, 50, 100].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(STEP).await;
                    }
                    if !self.progress(p, 100).await {
                        break;
                    }
                }
                content(vec![text("Progress test completed.")])
            }
            "test_sampling" => match string_arg(args, "prompt") {
                Ok(prompt) => self.sample(prompt).await,
                Err(e) => e,
            },
            "test_elicitation" => {
                let message = match string_arg(args, "message") {
                    Ok(m) => m,
                    Err(e) => return e,
                };
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"}
                    },
                    "required": ["username", "email"]
                });
                self.elicit("User response", message, schema).await
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "title": "Name", "default": "John Doe"},
                        "age": {"type": "integer", "title": "Age", "minimum": 0, "default": 30},
                        "score": {"type": "number", "title": "Score", "default": 95.5},
                        "status": {"type": "string", "title": "Status", "enum": ["active", "inactive", "pending"], "default": "active"},
                        "verified": {"type": "boolean", "title": "Verified", "default": true}
                    }
                });
                self.elicit(
                    "Elicitation completed",
                    "Please review your profile",
                    schema,
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                let titled = |pairs: &[(&str, &str)]| -> Vec<Value> {
                    pairs
                        .iter()
                        .map(|(c, t)| json!({"const": c, "title": t}))
                        .collect()
                };
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                        "titledSingle": {"type": "string", "oneOf": titled(&[("value1", "First Option"), ("value2", "Second Option"), ("value3", "Third Option")])},
                        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
                        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                        "titledMulti": {"type": "array", "items": {"anyOf": titled(&[("value1", "First Choice"), ("value2", "Second Choice"), ("value3", "Third Choice")])}}
                    }
                });
                self.elicit("Elicitation completed", "Please pick your options", schema)
                    .await
            }
            _ => tool_error(format!("Unknown tool: {name}")),
        }
    }

    async fn sample(&self, prompt: &str) -> Value {
        let params = json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": 100
        });
        match self.ask("sampling/createMessage", params).await {
            Ok(r) => {
                let answer = r.pointer("/content/text").and_then(Value::as_str);
                content(vec![text(format!(
                    "LLM response: {}",
                    answer.unwrap_or("")
                ))])
            }
            Err(e) => tool_error(format!("Sampling failed: {e}")),
        }
    }

    async fn elicit(&self, label: &str, message: &str, schema: Value) -> Value {
        let params = json!({"message": message, "requestedSchema": schema});
        match self.ask("elicitation/create", params).await {
            Ok(r) => {
                let action = r.get("action").and_then(Value::as_str).unwrap_or("?");
                let got = r.get("content").cloned().unwrap_or(Value::Null);
                content(vec![text(format!(
                    "{label}: action={action}, content={got}"
                ))])
            }
            Err(e) => tool_error(format!("Elicitation failed: {e}")),
        }
    }
}

/// A required string argument; a tool error result when it is missing.
fn string_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, Value> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| tool_error(format!("Invalid arguments: {key} must be a string")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::conformance::{Server, Session};

    fn session(caps: Value) -> Session {
        Session {
            client_caps: caps,
            log_level: 1.into(),
            next_id: 0.into(),
            pending: Default::default(),
            subscriptions: Default::default(),
        }
    }

    /// The JSON of the next SSE event on `rx`.
    async fn next(rx: &mut mpsc::Receiver<Bytes>) -> Value {
        let ev = rx.recv().await.expect("an event");
        let data = crate::proto::sse::data(&ev).expect("a data field");
        serde_json::from_slice(&data).unwrap()
    }

    #[tokio::test]
    async fn client_answers_reach_the_waiting_call() {
        let s = Arc::new(session(json!({"sampling": {}})));
        let (tx, mut rx) = mpsc::channel(4);
        let run = Run {
            session: s.clone(),
            tx,
            progress_token: None,
        };
        let call = tokio::spawn(async move { run.sample("hi").await });
        let req = next(&mut rx).await;
        assert_eq!(req["method"], "sampling/createMessage");
        assert_eq!(req["params"]["messages"][0]["content"]["text"], "hi");
        // An answer to another id is ignored; the right one completes the call.
        s.answer(json!({"jsonrpc": "2.0", "id": 99, "result": {}}));
        let answer = json!({"role": "assistant", "content": {"type": "text", "text": "yo"}});
        s.answer(json!({"jsonrpc": "2.0", "id": req["id"], "result": answer}));
        let result = call.await.unwrap();
        assert_eq!(result["content"][0]["text"], "LLM response: yo");
        assert!(s.pending.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn ending_the_session_fails_waiting_calls() {
        let server = Server::default();
        let sid = server.start(session(json!({"elicitation": {}})));
        let s = server.sessions.lock().unwrap().live[&sid].clone();
        let (tx, mut rx) = mpsc::channel(4);
        let run = Run {
            session: s,
            tx,
            progress_token: None,
        };
        let call = tokio::spawn(async move { run.elicit("x", "m", json!({})).await });
        assert_eq!(next(&mut rx).await["method"], "elicitation/create");
        assert!(server.end(&sid));
        let result = call.await.unwrap();
        assert_eq!(result["isError"], true, "{result}");
    }

    #[tokio::test]
    async fn requests_need_the_client_capability() {
        let (tx, _rx) = mpsc::channel(4);
        let run = Run {
            session: Arc::new(session(json!({}))),
            tx,
            progress_token: None,
        };
        let result = run.sample("hi").await;
        assert_eq!(result["isError"], true, "{result}");
    }
}
