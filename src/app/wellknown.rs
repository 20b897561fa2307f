//! OAuth 2.0 Protected Resource Metadata (RFC 9728), served when `[auth.oauth]` is configured:
//! at `/.well-known/oauth-protected-resource/mcp/{name}` for each route (the path-inserted form
//! MCP clients try first) and at `/.well-known/oauth-protected-resource` for the gateway as a
//! whole. MCP clients read it to find the authorization server and the resource identifier to
//! request tokens for (RFC 8707); `resource` must equal the identifier the path derives from.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;

use super::body::{self, Body};
use super::Shared;

const PREFIX: &str = "/.well-known/oauth-protected-resource";

/// Answers a metadata request, or `None` for any other path.
pub(crate) fn serve<B>(gw: &Shared, req: &Request<B>) -> Option<Response<Body>> {
    let rest = req.uri().path().strip_prefix(PREFIX)?;
    let oauth = gw.config.auth.oauth.as_ref()?;
    let reply = |status: StatusCode, text: String| {
        let mut r = Response::new(body::full(text));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    if req.method() != Method::GET {
        return Some(reply(StatusCode::METHOD_NOT_ALLOWED, "{}".into()));
    }
    let routes = &gw.config.upstreams;
    let (resource, scopes): (String, Vec<&str>) = match rest {
        "" | "/" => {
            let mut all: Vec<&str> = Vec::new();
            for r in routes {
                for s in &r.required_scopes {
                    if !all.contains(&s.as_str()) {
                        all.push(s);
                    }
                }
            }
            (oauth.resource_base.clone(), all)
        }
        "/mcp" if gw.config.hub.enabled => (
            oauth.hub_resource(),
            gw.config
                .hub
                .required_scopes
                .iter()
                .map(String::as_str)
                .collect(),
        ),
        _ => {
            let name = rest.strip_prefix("/mcp/")?;
            let Some(r) = routes.iter().find(|r| r.name == name) else {
                return Some(reply(StatusCode::NOT_FOUND, "{}".into()));
            };
            (
                oauth.resource(&r.name),
                r.required_scopes.iter().map(String::as_str).collect(),
            )
        }
    };
    let supported: Vec<&str> = match &oauth.scopes_supported {
        Some(s) => s.iter().map(String::as_str).collect(),
        None => scopes,
    };
    let doc = json!({
        "resource": resource,
        "authorization_servers": oauth.authorization_servers,
        "scopes_supported": supported,
        "bearer_methods_supported": ["header"],
        "resource_name": "Palisade MCP gateway",
    });
    Some(reply(StatusCode::OK, doc.to_string()))
}
