//! The JSON-RPC 2.0 envelope: validated once, kept as spans over the original bytes.
//!
//! Nothing is re-serialised: the bytes a client sent are the bytes the upstream receives. The
//! envelope exposes what later controls need (kind, id, method, raw params) without a tree.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use bytes::Bytes;

use super::json::{self, JsonError};

/// What kind of JSON-RPC message this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`: expects exactly one response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and exactly one of `result`/`error` (a client answering a server request).
    Response,
}

/// A JSON-RPC id: MCP allows strings and integers, never `null`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// An integer id.
    Num(i64),
    /// A string id (unescaped).
    Str(Box<str>),
}

impl Id {
    /// Writes the id as JSON.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Id::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Id::Str(s) => super::codes::push_json_str(out, s),
        }
    }

    pub(crate) fn parse(raw: &[u8]) -> Option<Id> {
        match raw.first()? {
            b'"' => Some(Id::Str(json::unescape(raw).into())),
            // `-0` is refused: serde_json (and JavaScript) read it as the float -0.0, so the
            // upstream would answer with an id the gateway does not recognise.
            b'-' | b'0'..=b'9' if raw != b"-0" => std::str::from_utf8(raw)
                .ok()?
                .parse::<i64>()
                .ok()
                .map(Id::Num),
            _ => None,
        }
    }
}

/// Why a body is not an acceptable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not JSON, or JSON we refuse to interpret (duplicate keys, too deep, …).
    #[error(transparent)]
    Json(#[from] JsonError),
    /// `"jsonrpc"` is missing or not exactly `"2.0"`.
    #[error("jsonrpc member missing or not \"2.0\"")]
    Version,
    /// `id` is present but not a string or an integer.
    #[error("id must be a string or an integer")]
    BadId,
    /// `method` is present but not a string.
    #[error("method must be a string")]
    BadMethod,
    /// `params` is present but not an object or array.
    #[error("params must be an object or an array")]
    BadParams,
    /// A response carries both `result` and `error`, or neither.
    #[error("a response must carry exactly one of result and error")]
    ResultAndError,
    /// Neither a request, a notification nor a response.
    #[error("not a request, notification or response")]
    Unclassifiable,
}

impl EnvelopeError {
    /// True when the body is not even JSON (JSON-RPC "parse error"), false when it is JSON but
    /// not an acceptable message ("invalid request").
    pub fn is_parse_error(&self) -> bool {
        matches!(
            self,
            EnvelopeError::Json(JsonError::Syntax(_) | JsonError::Utf8)
        )
    }
}

/// One validated JSON-RPC message over its original bytes.
#[derive(Debug, Clone)]
pub struct Envelope {
    bytes: Bytes,
    kind: Kind,
    id: Option<Id>,
    method: Option<Cow<'static, str>>,
    params: Option<Range<usize>>,
    result: Option<Range<usize>>,
    has_error: bool,
    prototype_key: Option<usize>,
}

/// Methods named often enough that we avoid allocating for them.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "notifications/initialized",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "server/discover",
];

impl Envelope {
    /// Validates `bytes` as exactly one JSON-RPC 2.0 message (no batches).
    pub fn parse(bytes: Bytes, max_depth: usize) -> Result<Self, EnvelopeError> {
        let mut jsonrpc = None;
        let mut id = None;
        let mut method = None;
        let mut params = None;
        let mut result = None;
        let mut error = None;
        let prototype_key = json::scan_noting(&bytes, max_depth, |key, span| {
            match key {
                "jsonrpc" => jsonrpc = Some(span),
                "id" => id = Some(span),
                "method" => method = Some(span),
                "params" => params = Some(span),
                "result" => result = Some(span),
                "error" => error = Some(span),
                _ => {} // unknown members travel on untouched
            }
            Ok(())
        })?;
        let b = &bytes[..];
        if jsonrpc.map(|r| &b[r]) != Some(&b"\"2.0\""[..]) {
            return Err(EnvelopeError::Version);
        }
        let id = match id {
            Some(r) => Some(Id::parse(&b[r]).ok_or(EnvelopeError::BadId)?),
            None => None,
        };
        let method = match method {
            Some(r) if b[r.start] == b'"' => {
                let m = json::unescape(&b[r]);
                Some(match KNOWN_METHODS.iter().find(|k| **k == m) {
                    Some(k) => Cow::Borrowed(*k),
                    None => Cow::Owned(m.into_owned()),
                })
            }
            Some(_) => return Err(EnvelopeError::BadMethod),
            None => None,
        };
        if let Some(r) = &params {
            if !matches!(b[r.start], b'{' | b'[') {
                return Err(EnvelopeError::BadParams);
            }
        }
        let kind = match (&method, &id, &result, &error) {
            (Some(_), _, None, None) if id.is_some() => Kind::Request,
            (Some(_), None, None, None) => Kind::Notification,
            (None, Some(_), Some(_), None) | (None, Some(_), None, Some(_)) => Kind::Response,
            (None, Some(_), Some(_), Some(_)) | (None, Some(_), None, None) => {
                return Err(EnvelopeError::ResultAndError)
            }
            _ => return Err(EnvelopeError::Unclassifiable),
        };
        Ok(Envelope {
            prototype_key,
            has_error: error.is_some(),
            bytes,
            kind,
            id,
            method,
            params,
            result,
        })
    }

    /// Byte offset of the first key, anywhere in the message, that changes a JavaScript
    /// object's prototype (`__proto__`, `constructor`, `prototype`).
    pub fn prototype_key(&self) -> Option<usize> {
        self.prototype_key
    }

    /// The original bytes, exactly as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Request, notification or response.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The id, if any.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// The method, if any.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The raw `params` value, if present.
    pub fn params(&self) -> Option<&[u8]> {
        self.params.clone().map(|r| &self.bytes[r])
    }

    /// True for a response carrying `error`.
    pub fn is_error_response(&self) -> bool {
        self.has_error
    }

    /// The raw `result` value of a response, if present.
    pub fn result(&self) -> Option<&[u8]> {
        self.result.clone().map(|r| &self.bytes[r])
    }

    /// `params.name` as a string (the tool of `tools/call`, the prompt of `prompts/get`).
    pub fn param_str(&self, key: &str) -> Option<Cow<'_, str>> {
        let params = self.params()?;
        let r = member(params, key)?;
        (params[r.start] == b'"').then(|| json::unescape(&params[r]))
    }

    /// `params._meta[key]` as a string (e.g. `io.modelcontextprotocol/protocolVersion`).
    pub fn meta_str(&self, key: &str) -> Option<Cow<'_, str>> {
        let params = self.params()?;
        let meta = &params[member(params, "_meta")?];
        let r = member(meta, key)?;
        (meta[r.start] == b'"').then(|| json::unescape(&meta[r]))
    }
}

/// The span of member `key` of the already-validated object `obj`.
pub(crate) fn member(obj: &[u8], key: &str) -> Option<Range<usize>> {
    json::member(obj, key)
}

#[cfg(test)]
mod tests;
