//! Clients and fixtures for the hub's tests (`tests/hub*.rs`).

use std::process::Command;

use serde_json::{json, Value};

use super::*;

/// The stdio fixture as an upstream named `name`, confined to what Python needs.
pub fn fixture(name: &str, python: &str, extra: &str) -> String {
    python_upstream(name, python, &["stdio_fixture.py"], extra)
}

/// A Python script of `tests/peers` (`args[0]`, then its arguments) as a stdio upstream named
/// `name`, confined to what Python needs.
pub fn python_upstream(name: &str, python: &str, args: &[&str], extra: &str) -> String {
    let peers = std::env::var("PALISADE_PEERS_DIR").unwrap();
    let prefixes = python_prefixes(python);
    let mut argv = vec![format!("{peers}/{}", args[0])];
    argv.extend(args[1..].iter().map(|a| a.to_string()));
    format!(
        "[[upstream]]\nname = {name:?}\ncommand = {python:?}\nargs = {argv:?}\n{extra}\n\
         [upstream.sandbox]\nlandlock = \"required\"\nread_paths = {:?}\n",
        [vec![peers.clone()], prefixes].concat(),
    )
}

/// The directories a Python interpreter reads its standard library and packages from.
pub fn python_prefixes(python: &str) -> Vec<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; print(sys.base_prefix); print(sys.prefix)",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A legacy client session with the hub.
pub struct Client {
    pub url: String,
    pub auth: Option<String>,
    pub sid: String,
    pub next: u64,
}

impl Client {
    pub async fn connect(url: String, token: Option<&str>) -> Client {
        Client::connect_with(url, token, INIT).await
    }

    /// A session opened with the `initialize` request `init`.
    pub async fn connect_with(url: String, token: Option<&str>, init: &str) -> Client {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h = Vec::new();
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        let r = post(&url, &h, init).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let sid = r.session().expect("session id");
        let c = Client {
            url,
            auth,
            sid,
            next: 10,
        };
        let r = c
            .raw(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        assert_eq!(r.status, 202);
        c
    }

    pub async fn raw(&self, body: &str) -> Reply {
        let mut h = vec![
            ("mcp-session-id", self.sid.as_str()),
            ("mcp-protocol-version", "2025-11-25"),
        ];
        if let Some(a) = &self.auth {
            h.push(("authorization", a.as_str()));
        }
        post(&self.url, &h, body).await
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let body = json!({"jsonrpc":"2.0","id":self.next,"method":method,"params":params});
        let r = self.raw(&body.to_string()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        last_message(&r)
    }

    /// The names in `tools/list`.
    pub async fn tool_names(&mut self) -> Vec<String> {
        let tools = self.request("tools/list", json!({})).await;
        tools["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{tools}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The text of a tool's first content item (or the error).
    pub async fn call(&mut self, tool: &str, args: Value) -> String {
        let v = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        match v["result"]["content"][0]["text"].as_str() {
            Some(t) => t.to_owned(),
            None => format!(
                "error:{}",
                v["error"]["data"]["code"].as_str().unwrap_or("?")
            ),
        }
    }
}

/// Reads a streamed response body until its text contains `needle`; returns what was read.
pub async fn read_until(body: &mut hyper::body::Incoming, needle: &str) -> String {
    let mut text = String::new();
    while !text.contains(needle) {
        let f = http_body_util::BodyExt::frame(body).await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(f.data_ref().unwrap()).unwrap());
    }
    text
}

/// A 2026-07-28 request to the hub: headers mirrored from the body.
pub async fn modern(url: &str, body: Value, extra: &[(&str, &str)]) -> Reply {
    let method = body["method"].as_str().unwrap().to_owned();
    let name = body["params"]["name"].as_str().map(str::to_owned);
    let mut h = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method.as_str()),
    ];
    if let Some(n) = &name {
        h.push(("mcp-name", n.as_str()));
    }
    for (k, v) in extra {
        h.retain(|(x, _)| x != k);
        h.push((k, v));
    }
    post(url, &h, &body.to_string()).await
}

pub fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientCapabilities": {}})
}

pub fn last_message(r: &Reply) -> Value {
    let text = String::from_utf8_lossy(&r.body);
    match text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|d| !d.is_empty())
    {
        Some(d) => serde_json::from_str(d).unwrap(),
        None => r.json(),
    }
}

impl Client {
    /// Posts a request on the session and returns the streamed response body unread.
    pub async fn stream(&mut self, method: &str, params: Value) -> hyper::body::Incoming {
        self.next += 1;
        let body = json!({"jsonrpc":"2.0","id":self.next,"method":method,"params":params});
        let mut req = http::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let resp = palisade::upstream::client(std::time::Duration::from_secs(2))
            .request(req)
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        resp.into_body()
    }
}

/// The JSON messages of SSE text, in order.
pub fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// An `initialize` declaring the elicitation capability.
pub const INIT_ELICIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"it","version":"0"}}}"#;

/// A 2026-07-28 `tools/call` of `tool` asking `question`, with `_meta` `meta` and the params in
/// `extra` (a retry's `inputResponses` and `requestState`).
pub fn ask_call(id: u64, tool: &str, question: &str, meta: &Value, extra: Value) -> Value {
    let mut params = json!({"name": tool, "arguments": {"question": question}, "_meta": meta});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params})
}
