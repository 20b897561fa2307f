//! The permission grammar, one for every seed's examples.
//!
//! A permission is up to four `:`-separated segments, `resource:action:scope:item` (the fourth may
//! itself contain `:`, e.g. a resource URI). A segment is a literal, `*` (any one segment), or a
//! literal ending in `*` (a prefix: `get_*`). A permission with fewer segments than a request's
//! name covers everything below it, so seed 004's `server:filesystem:*`, seed 003's
//! `tool:execute` and `mcp:tools` (all tool operations) mean what they say.
//!
//! What a request is called (the names it can be granted by) is decided in
//! [`super::Request::names`].

/// Checks a permission's syntax; `Err` says why.
pub fn check(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty permission".into());
    }
    for (i, seg) in p.splitn(4, ':').enumerate() {
        if seg.is_empty() {
            return Err(format!("segment {} of {p:?} is empty", i + 1));
        }
        let body = seg.strip_suffix('*').unwrap_or(seg);
        if body.contains('*') {
            return Err(format!("{p:?}: `*` may only be a whole segment or end one"));
        }
        let allowed = |c: char| {
            c.is_ascii_alphanumeric() || "_-./".contains(c) || (i == 3 && c.is_ascii_graphic())
        };
        if !body.chars().all(allowed) {
            return Err(format!(
                "{p:?}: segments are letters, digits, `_-./` and `*`"
            ));
        }
    }
    Ok(())
}

/// Whether permission `p` covers the request name `name` (segments).
pub fn covers(p: &str, name: &[&str]) -> bool {
    let mut segs = p.splitn(4, ':');
    for part in name {
        match segs.next() {
            // A shorter permission covers everything below it.
            None => return true,
            Some(seg) if !segment(seg, part) => return false,
            Some(_) => {}
        }
    }
    // The name is used up: a longer permission covers it only if the rest is all `*`.
    segs.all(|s| s == "*")
}

fn segment(seg: &str, part: &str) -> bool {
    match seg.strip_suffix('*') {
        Some(prefix) => part.starts_with(prefix),
        None => seg == part,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_004_examples() {
        let call = ["mcp", "tools", "call"];
        assert!(covers("mcp:tools:*", &call));
        assert!(covers("mcp:*:*", &call));
        assert!(covers("mcp:tools", &call));
        assert!(covers("mcp:tools:call", &call));
        assert!(!covers("mcp:tools:list", &call));
        assert!(!covers("mcp:resources:read", &call));
        assert!(!covers("admin:*:*", &call));
        let fs = ["server", "filesystem", "tools", "call"];
        assert!(covers("server:filesystem:*", &fs));
        assert!(covers("server:*:*", &fs));
        assert!(!covers("server:git:*", &fs));
        assert!(!covers("server:filesystem:resources", &fs));
    }

    #[test]
    fn seed_003_examples_and_items() {
        let exec = ["tool", "execute", "orders", "place_order"];
        assert!(covers("tool:execute", &exec));
        assert!(!covers("tool:read", &exec));
        assert!(covers("tool:execute:orders:place_*", &exec));
        assert!(!covers("tool:execute:orders:get_*", &exec));
        assert!(!covers("tool:execute:market", &exec));
        assert!(covers("*", &exec));
        assert!(covers(
            "resource:read:fs:file:///etc/*",
            &["resource", "read", "fs", "file:///etc/passwd"]
        ));
        assert!(!covers(
            "resource:read:fs:file:///etc/*",
            &["resource", "read", "fs", "file:///home/x"]
        ));
    }

    #[test]
    fn longer_permissions_need_stars_to_cover_shorter_names() {
        assert!(covers("mcp:tools:list:*", &["mcp", "tools", "list"]));
        assert!(!covers("mcp:tools:list:x", &["mcp", "tools", "list"]));
    }

    #[test]
    fn syntax() {
        for ok in [
            "mcp:tools:call",
            "*",
            "server:fs:*",
            "tool:execute",
            "a:b:c:file:///x:y",
            "x:get_*",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "mcp::call",
            "mcp:to*ols",
            "mcp:tools:ca ll",
            ":x",
            "mcp:tools:",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
