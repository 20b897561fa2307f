//! `input_required` results of 2026-07-28 upstreams: multi round-trip requests the other way
//! round from [`super::mrtr`].
//!
//! A 2026-07-28 upstream cannot send requests to its client. When a call needs input (an
//! elicitation, a sampling, the client's roots) the call ends with an `input_required` result
//! listing `inputRequests` (key → `{method, params}`) and, usually, an opaque `requestState`;
//! the client is to send the same request again, with a new id, carrying `inputResponses`
//! (key → result) and that state.
//!
//! - A legacy client has a session and takes server requests: the hub asks each question on the
//!   call's own response stream, with ids of the client's session, collects the answers and
//!   sends the upstream the retry itself, as many rounds as the upstream asks (bounded). The
//!   client sees one call with requests in the middle, as a legacy server would make it.
//! - A 2026-07-28 client gets the `input_required` result as the upstream wrote it, except that
//!   the upstream's `requestState` is replaced by a hub handle (parked like [`super::mrtr`]'s,
//!   bound to the principal and the request). The retry's `inputResponses` go upstream with
//!   the upstream's own state, which the client never sees: another principal cannot replay
//!   it, and an upstream's state cannot be steered by the client.

use bytes::Bytes;

use super::wire;
use crate::proto::json;

/// Whether an upstream result asks for input (`"resultType": "input_required"`).
pub fn is_input_required(result: &[u8]) -> bool {
    match wire::member(result, "resultType") {
        Some(b"\"input_required\"") => true,
        // An escaped spelling of the same string.
        Some(v) if v.contains(&b'\\') => {
            serde_json::from_slice::<String>(v).is_ok_and(|s| s == "input_required")
        }
        _ => false,
    }
}

/// One question of an `input_required` result.
#[derive(Debug, PartialEq, Eq)]
pub struct Question {
    /// Its key in `inputRequests` (and in the `inputResponses` of the retry).
    pub key: String,
    /// The request's method.
    pub method: String,
    /// Its raw `params`, if any.
    pub params: Option<Vec<u8>>,
}

/// The questions of an `input_required` result, in order; `None` when `inputRequests` is
/// missing or not a map of `{method, params}` requests.
pub fn questions(result: &[u8]) -> Option<Vec<Question>> {
    let reqs = wire::member(result, "inputRequests")?;
    let mut out = Vec::new();
    let mut ok = true;
    json::scan(reqs, usize::MAX, |key, r| {
        let q = &reqs[r];
        let method =
            wire::member(q, "method").and_then(|m| serde_json::from_slice::<String>(m).ok());
        match method {
            Some(method) => out.push(Question {
                key: key.to_owned(),
                method,
                params: wire::member(q, "params").map(<[u8]>::to_vec),
            }),
            None => ok = false,
        }
        Ok(())
    })
    .ok()?;
    (ok && !out.is_empty()).then_some(out)
}

/// The upstream's `requestState` (raw JSON), if it gave one.
pub fn request_state(result: &[u8]) -> Option<Bytes> {
    wire::member(result, "requestState").map(Bytes::copy_from_slice)
}

/// The params of the retry: the params first sent, with `inputResponses` (key → raw result)
/// and the upstream's `requestState` (removed when it gave none).
pub fn retry_params(sent: &[u8], answers: &[(String, Bytes)], state: Option<&[u8]>) -> Vec<u8> {
    let mut responses =
        Vec::with_capacity(64 + answers.iter().map(|(_, v)| v.len()).sum::<usize>());
    responses.push(b'{');
    for (i, (k, v)) in answers.iter().enumerate() {
        if i > 0 {
            responses.push(b',');
        }
        wire::push_str(&mut responses, k);
        responses.push(b':');
        responses.extend_from_slice(v);
    }
    responses.push(b'}');
    let p = wire::set_member(sent, "inputResponses", Some(&responses));
    wire::set_member(&p, "requestState", state)
}

/// The upstream's `input_required` result as a 2026-07-28 client gets it: the hub's `handle`
/// in place of the upstream's `requestState`, everything else as the upstream wrote it.
pub fn for_client(result: &[u8], handle: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(handle.len() + 2);
    wire::push_str(&mut h, handle);
    wire::set_member(result, "requestState", Some(&h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn v(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    const ASK: &[u8] = br#"{"resultType":"input_required","inputRequests":{"a":{"method":"elicitation/create","params":{"message":"name?"}},"b":{"method":"roots/list"}},"requestState":"up-state"}"#;

    #[test]
    fn questions_and_state_are_read_from_the_result() {
        assert!(is_input_required(ASK));
        assert!(is_input_required(
            br#"{"resultType":"input\u005frequired"}"#
        ));
        assert!(!is_input_required(
            br#"{"resultType":"complete","content":[]}"#
        ));
        assert!(!is_input_required(br#"{"content":[]}"#));
        let q = questions(ASK).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(
            (q[0].key.as_str(), q[0].method.as_str()),
            ("a", "elicitation/create")
        );
        assert_eq!(q[0].params.as_deref(), Some(&br#"{"message":"name?"}"#[..]));
        assert_eq!((q[1].key.as_str(), q[1].params.as_deref()), ("b", None));
        assert_eq!(request_state(ASK).as_deref(), Some(&br#""up-state""#[..]));
        assert_eq!(questions(br#"{"inputRequests":{"a":{"params":{}}}}"#), None);
        assert_eq!(questions(br#"{"inputRequests":{}}"#), None);
    }

    #[test]
    fn the_retry_carries_the_answers_and_the_upstreams_state() {
        let sent = br#"{"name":"ask","arguments":{"q":1},"requestState":"stale"}"#;
        let answers = [(
            "a".to_owned(),
            Bytes::from_static(br#"{"action":"accept"}"#),
        )];
        assert_eq!(
            v(&retry_params(sent, &answers, Some(br#""s2""#))),
            json!({"name":"ask","arguments":{"q":1},"requestState":"s2","inputResponses":{"a":{"action":"accept"}}})
        );
        assert_eq!(
            v(&retry_params(sent, &answers, None)),
            json!({"name":"ask","arguments":{"q":1},"inputResponses":{"a":{"action":"accept"}}})
        );
    }

    #[test]
    fn a_client_sees_the_hub_handle_never_the_upstream_state() {
        let out = for_client(ASK, "ph1.00");
        let out = v(&out);
        assert_eq!(out["requestState"], "ph1.00");
        assert_eq!(out["inputRequests"]["a"]["params"]["message"], "name?");
    }
}
