//! Fuzzes the envelope parser with arbitrary bytes.
//!
//! Beyond "never panics, never hangs", it checks the properties the gateway relies on:
//! - whatever the envelope accepts, serde_json (what most upstreams use) reads as the same
//!   message: same method, same id, same kind — no parser differential between what the gateway
//!   authorises and what the upstream executes;
//! - the accepted bytes are kept unchanged (forwarding is byte-faithful);
//! - `param_str("name")` agrees with serde's `params.name`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::proto::{Envelope, Id, Kind};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let Ok(env) = Envelope::parse(bytes.clone(), 64) else {
        return;
    };
    assert_eq!(env.bytes(), &bytes, "bytes are forwarded unchanged");
    let v: Value = serde_json::from_slice(data).expect("serde accepts what the envelope accepts");
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.get("jsonrpc").and_then(Value::as_str), Some("2.0"));
    assert_eq!(obj.get("method").and_then(Value::as_str), env.method());
    match (env.id(), obj.get("id")) {
        (None, None) => {}
        (Some(Id::Num(n)), Some(Value::Number(m))) => assert_eq!(Some(*n), m.as_i64()),
        (Some(Id::Str(s)), Some(Value::String(t))) => assert_eq!(&**s, t.as_str()),
        (a, b) => panic!("id differs: {a:?} vs {b:?}"),
    }
    let kind = match (obj.contains_key("method"), obj.contains_key("id")) {
        (true, true) => Kind::Request,
        (true, false) => Kind::Notification,
        (false, _) => Kind::Response,
    };
    assert_eq!(env.kind(), kind);
    let name = obj
        .get("params")
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str);
    assert_eq!(env.param_str("name").as_deref(), name);
});
