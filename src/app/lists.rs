//! Response checks for lists on proxied routes: `tools/list`, `prompts/list`,
//! `resources/list` and `resources/templates/list` answers show the caller only what it may see.
//! An answer with nothing to hide passes through byte for byte; a streamed (SSE) answer is
//! read to its end first (lists are small and final), its response event rewritten, the rest
//! kept.

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use serde_json::Value;

use super::body;
use super::error::Rejection;
use super::pipeline::Outcome;
use super::Shared;
use crate::controls::authz::{Access, Item};
use crate::controls::pinning::{Verdict, Withheld};
use crate::proto::sse;
use crate::upstream::{self, RelayEnd, ResponseError};

/// The result member holding a list method's items.
pub(super) fn member_of(method: &str) -> Option<&'static str> {
    match method {
        "tools/list" => Some("tools"),
        "prompts/list" => Some("prompts"),
        "resources/list" => Some("resources"),
        "resources/templates/list" => Some("resourceTemplates"),
        _ => None,
    }
}

/// Filters the upstream's answer to a list request on proxied route `u`.
pub(super) async fn filter(
    gw: &Shared,
    out: Outcome,
    member: &'static str,
    access: &Access<'_>,
    u: usize,
) -> Result<Outcome, Rejection> {
    // Tools are also judged by pinning, as this client was shown them, with the server
    // instructions the gateway's own session got.
    let instructions = match member {
        "tools" if gw.hub.pins().active() => Some(gw.hub.proxied_instructions(u).await?),
        _ => None,
    };
    let changed = std::sync::atomic::AtomicBool::new(false);
    let keep = |item: &Value| {
        let pinned = instructions.as_ref().is_none_or(|i| {
            let v = gw.hub.pins().verdict(u, i.as_deref(), item);
            if v == Verdict::Withheld(Withheld::Changed) {
                changed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            v == Verdict::Pass
        });
        pinned && visible(access, u, member, item)
    };
    let filtered = match out {
        Outcome::Done(resp, n) => {
            let (parts, b) = resp.into_parts();
            let bytes = b.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let (bytes, n) = match filter_message(&bytes, member, &keep) {
                Some(f) => {
                    let len = f.len() as u64;
                    (Bytes::from(f), len)
                }
                None => (bytes, n),
            };
            Ok(Outcome::Done(
                Response::from_parts(parts, body::full(bytes)),
                n,
            ))
        }
        Outcome::Stream {
            parts,
            upstream: up,
            id,
            check: _,
        } => {
            let limits = &gw.config.limits;
            let (all, end) = upstream::collect_sse(
                up,
                id,
                String::new(),
                limits.max_response_bytes,
                limits.max_json_depth,
                None,
            )
            .await;
            if !matches!(end, RelayEnd::Complete) {
                return Err(ResponseError::Protocol("list stream ended early").into());
            }
            let mut split = sse::Splitter::default();
            split.push(&all);
            let mut rebuilt = Vec::with_capacity(all.len());
            while let Some(event) = split.next_event() {
                let changed = sse::data(&event).and_then(|d| filter_message(&d, member, &keep));
                match changed {
                    Some(json) => rebuilt.extend_from_slice(&sse::message_event_bytes(&json)),
                    None => rebuilt.extend_from_slice(&event),
                }
            }
            let n = rebuilt.len() as u64;
            Ok(Outcome::Done(
                Response::from_parts(parts, body::full(rebuilt)),
                n,
            ))
        }
        other => Ok(other),
    };
    if changed.into_inner() {
        gw.hub.forget_proxied_tools(u).await;
    }
    filtered
}

/// The message with hidden items removed from `result.{member}`, or `None` when it is not a
/// list result or nothing is hidden (it then passes unchanged).
fn filter_message(bytes: &[u8], member: &str, keep: &dyn Fn(&Value) -> bool) -> Option<Vec<u8>> {
    let mut msg: Value = serde_json::from_slice(bytes).ok()?;
    let items = msg.get_mut("result")?.get_mut(member)?.as_array_mut()?;
    let before = items.len();
    items.retain(|i| keep(i));
    if items.len() == before {
        return None;
    }
    serde_json::to_vec(&msg).ok()
}

fn visible(access: &Access<'_>, u: usize, member: &str, item: &Value) -> bool {
    let text = |k| item.get(k).and_then(Value::as_str).unwrap_or_default();
    let it = match member {
        "tools" => Item::Tool(text("name")),
        "prompts" => Item::Prompt(text("name")),
        "resources" => Item::Resource(text("uri")),
        _ => Item::Resource(text("uriTemplate")),
    };
    access.visible(u, it)
}
