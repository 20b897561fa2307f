//! The demo tools and their input schemas.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};

/// Fetches URLs for `fetch_url` (a real client; the gateway's SSRF guard is what protects it).
#[derive(Debug)]
pub(super) struct Fetcher(crate::upstream::HttpClient);

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher(crate::upstream::client(Duration::from_secs(5)))
    }
}

const MAX_FETCH: usize = 64 * 1024;

pub(super) fn list() -> Value {
    json!([
        {
            "name": "echo",
            "description": "Returns the text it is given.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], "additionalProperties": false}
        },
        {
            "name": "get_quote",
            "description": "A simulated bid/ask quote for a symbol such as EURUSD or BTC/USD.",
            "inputSchema": {"type": "object", "properties": {"symbol": {"type": "string", "pattern": "^[A-Z]{2,6}(/[A-Z]{3,6})?$"}}, "required": ["symbol"], "additionalProperties": false},
            "outputSchema": {"type": "object", "properties": {"symbol": {"type": "string"}, "bid": {"type": "number"}, "ask": {"type": "number"}, "currency": {"type": "string"}}, "required": ["symbol", "bid", "ask", "currency"]}
        },
        {
            "name": "place_order",
            "description": "Places a simulated order; nothing reaches a real exchange.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "symbol": {"type": "string", "pattern": "^[A-Z]{2,6}(/[A-Z]{3,6})?$", "x-mcp-header": "Symbol"},
                    "side": {"type": "string", "enum": ["buy", "sell"]},
                    "quantity": {"type": "number", "exclusiveMinimum": 0},
                    "price": {"type": "number", "exclusiveMinimum": 0}
                },
                "required": ["symbol", "side", "quantity"],
                "additionalProperties": false
            }
        },
        {
            "name": "get_history",
            "description": "Simulated candles of a symbol since a date-time, at an interval (1m 5m 15m 1h 4h 1d).",
            "inputSchema": {"type": "object", "properties": {"symbol": {"type": "string"}, "interval": {"type": "string"}, "since": {"type": "string"}}, "required": ["symbol", "interval", "since"], "additionalProperties": false}
        },
        {
            "name": "fetch_url",
            "description": "Fetches a URL (http or https) and returns the status and up to 64 KiB of the body.",
            "inputSchema": {"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}, "required": ["url"], "additionalProperties": false}
        }
    ])
}

type ToolResult = Result<Value, (i64, String)>;

fn invalid(why: &str) -> (i64, String) {
    (-32602, format!("Invalid params: {why}"))
}

fn text(s: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": s.into()}]})
}

fn only(args: &Value, allowed: &[&str]) -> Result<(), (i64, String)> {
    let obj = args
        .as_object()
        .ok_or_else(|| invalid("arguments must be an object"))?;
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(&format!("unexpected argument {k}"))),
        None => Ok(()),
    }
}

fn symbol(args: &Value) -> Result<&str, (i64, String)> {
    let s = args
        .get("symbol")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("symbol is required"))?;
    let (base, quote) = match s.split_once('/') {
        Some((b, q)) => (b, Some(q)),
        None => (s, None),
    };
    let ok = |p: &str, lo| (lo..=6).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_uppercase());
    if ok(base, 2) && quote.is_none_or(|q| ok(q, 3)) {
        Ok(s)
    } else {
        Err(invalid("symbol must look like EURUSD or BTC/USD"))
    }
}

fn positive(args: &Value, key: &str, required: bool) -> Result<Option<f64>, (i64, String)> {
    match args.get(key) {
        None if !required => Ok(None),
        None => Err(invalid(&format!("{key} is required"))),
        Some(v) => match v.as_f64() {
            Some(n) if n > 0.0 && n.is_finite() => Ok(Some(n)),
            _ => Err(invalid(&format!("{key} must be a positive number"))),
        },
    }
}

pub(super) async fn call(fetcher: &Fetcher, name: &str, args: &Value) -> ToolResult {
    match name {
        "echo" => {
            only(args, &["text"])?;
            let t = args
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("text must be a string"))?;
            Ok(text(t))
        }
        "get_quote" => {
            only(args, &["symbol"])?;
            let s = symbol(args)?;
            // Deterministic pseudo-price, so tests can rely on it.
            let h = s
                .bytes()
                .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
            let bid = 1.0 + (h % 100_000) as f64 / 100.0;
            let ask = bid + 0.02;
            let q = json!({"symbol": s, "bid": bid, "ask": ask, "currency": "USD"});
            Ok(
                json!({"content": [{"type": "text", "text": q.to_string()}], "structuredContent": q}),
            )
        }
        "place_order" => {
            only(args, &["symbol", "side", "quantity", "price"])?;
            let s = symbol(args)?;
            let side = args
                .get("side")
                .and_then(Value::as_str)
                .filter(|s| *s == "buy" || *s == "sell");
            let side = side.ok_or_else(|| invalid("side must be buy or sell"))?;
            positive(args, "quantity", true)?;
            positive(args, "price", false)?;
            let order = json!({
                "order_id": uuid::Uuid::now_v7().to_string(), "status": "accepted", "simulated": true,
                "symbol": s, "side": side, "quantity": args["quantity"], "price": args.get("price")
            });
            Ok(
                json!({"content": [{"type": "text", "text": order.to_string()}], "structuredContent": order}),
            )
        }
        "get_history" => {
            only(args, &["symbol", "interval", "since"])?;
            let s = symbol(args)?;
            let field = |k| args.get(k).and_then(Value::as_str);
            let (Some(interval), Some(since)) = (field("interval"), field("since")) else {
                return Err(invalid("interval and since must be strings"));
            };
            let h = json!({"symbol": s, "interval": interval, "since": since, "candles": []});
            Ok(
                json!({"content": [{"type": "text", "text": h.to_string()}], "structuredContent": h}),
            )
        }
        "fetch_url" => {
            only(args, &["url"])?;
            let url = args
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("url is required"))?;
            let uri: http::Uri = url.parse().map_err(|_| invalid("url is not a valid URL"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) {
                return Err(invalid("only http and https URLs"));
            }
            let req = Request::builder()
                .method(Method::GET)
                .uri(uri)
                .body(Full::new(Bytes::new()))
                .map_err(|e| invalid(&e.to_string()))?;
            let fetched = tokio::time::timeout(Duration::from_secs(10), async {
                let resp = fetcher.0.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let mut body = Vec::new();
                let mut b = Limited::new(resp.into_body(), usize::MAX);
                while let Some(frame) = b.frame().await {
                    if let Ok(d) = frame.map_err(|e| e.to_string())?.into_data() {
                        body.extend_from_slice(&d);
                        if body.len() >= MAX_FETCH {
                            body.truncate(MAX_FETCH);
                            break;
                        }
                    }
                }
                Ok::<_, String>((status, body))
            })
            .await;
            match fetched {
                Ok(Ok((status, body))) => Ok(text(format!(
                    "HTTP {status}\n\n{}",
                    String::from_utf8_lossy(&body)
                ))),
                Ok(Err(e)) => Ok(
                    json!({"content": [{"type": "text", "text": format!("fetch failed: {e}")}], "isError": true}),
                ),
                Err(_) => Ok(
                    json!({"content": [{"type": "text", "text": "fetch timed out"}], "isError": true}),
                ),
            }
        }
        _ => Err(invalid(&format!("unknown tool {name}"))),
    }
}
