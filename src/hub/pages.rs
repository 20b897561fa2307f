//! Pagination of the merged lists.
//!
//! The hub reads every page of each upstream's list (upstream cursors never reach a client) and
//! hands the merged list out in pages of `[hub] page_size` items. Its cursor is `hc1.` + the
//! offset of the next page + a digest of the keys (names or URIs) of the whole merged list, so a
//! cursor is only good for the list it was cut from: when the merged list changed in between (an
//! upstream's list changed, or came back), the cursor is refused with -32602 and the client
//! starts over, rather than silently skipping or repeating items. A cursor is not secret; all it
//! can choose is an offset into a list the caller may read anyway.

use std::hash::{Hash, Hasher};

use serde_json::{Map, Value};

use super::HubError;

const PREFIX: &str = "hc1.";

/// The result object of one page of `items` (key, item) under `member`, starting where the raw
/// JSON `cursor` says (the first page without one).
pub fn page(
    member: &str,
    items: Vec<(String, Value)>,
    cursor: Option<&[u8]>,
    size: usize,
) -> Result<Vec<u8>, HubError> {
    let digest = digest(&items);
    let start = match cursor {
        None => 0,
        Some(c) => {
            let c: String =
                serde_json::from_slice(c).map_err(|_| HubError::InvalidParams("cursor"))?;
            parse(&c, digest, items.len()).ok_or(HubError::InvalidParams("cursor"))?
        }
    };
    let end = start.saturating_add(size).min(items.len());
    let mut out = Map::new();
    let more = end < items.len();
    let page: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(end - start)
        .map(|(_, v)| v)
        .collect();
    out.insert(member.into(), Value::Array(page));
    if more {
        out.insert(
            "nextCursor".into(),
            Value::String(format!("{PREFIX}{end:x}.{digest:016x}")),
        );
    }
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}

/// A digest of the list's keys, in order (SipHash with fixed keys: the same on every replica).
fn digest(items: &[(String, Value)]) -> u64 {
    #[allow(deprecated)] // SipHasher: fixed keys on purpose; DefaultHasher's are unspecified
    let mut h = std::hash::SipHasher::new();
    for (k, _) in items {
        k.hash(&mut h);
    }
    h.finish()
}

/// The offset a cursor names, if it was cut from this list.
fn parse(cursor: &str, digest: u64, len: usize) -> Option<usize> {
    let (offset, d) = cursor.strip_prefix(PREFIX)?.split_once('.')?;
    let offset = usize::from_str_radix(offset, 16).ok()?;
    (u64::from_str_radix(d, 16).ok()? == digest && offset > 0 && offset < len).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(names: &[&str]) -> Vec<(String, Value)> {
        names
            .iter()
            .map(|n| (n.to_string(), json!({ "name": n })))
            .collect()
    }

    fn v(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn pages_follow_each_other_and_end_without_a_cursor() {
        let names = ["a", "b", "c", "d", "e"];
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..5 {
            let raw = cursor.as_ref().map(|c| serde_json::to_vec(c).unwrap());
            let out = v(&page("tools", list(&names), raw.as_deref(), 2).unwrap());
            for t in out["tools"].as_array().unwrap() {
                seen.push(t["name"].as_str().unwrap().to_owned());
            }
            cursor = out["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen, names);
        let whole = v(&page("tools", list(&names), None, 500).unwrap());
        assert!(whole.get("nextCursor").is_none());
        assert_eq!(whole["tools"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn a_cursor_is_good_only_for_the_list_it_was_cut_from() {
        let out = v(&page("tools", list(&["a", "b", "c"]), None, 1).unwrap());
        let c = serde_json::to_vec(&out["nextCursor"]).unwrap();
        assert!(page("tools", list(&["a", "b", "c"]), Some(&c), 1).is_ok());
        // The list changed in between.
        assert!(page("tools", list(&["a", "x", "c"]), Some(&c), 1).is_err());
        // Forged or malformed cursors.
        let d = format!("{:016x}", digest(&list(&["a", "b", "c"])));
        for bad in [
            format!("hc1.0.{d}"),
            format!("hc1.3.{d}"),
            format!("hc1.ffffffffffffffffff.{d}"),
            "hc1.1".to_owned(),
            "garbage".to_owned(),
        ] {
            let raw = serde_json::to_vec(&bad).unwrap();
            assert!(
                page("tools", list(&["a", "b", "c"]), Some(&raw), 1).is_err(),
                "{bad}"
            );
        }
        assert!(page("tools", list(&["a"]), Some(b"17"), 1).is_err());
    }
}
