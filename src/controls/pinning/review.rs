//! What `palisade tools pending` and `palisade tools approve` show an operator.

use std::fmt::Write;

use super::store::{self, Pending, Pin};
use crate::config::PinningConfig;

/// Every withheld definition, with what changed since the approved one (member by member).
pub fn pending(cfg: &PinningConfig) -> Result<String, String> {
    let pins = store::load::<Pin>(&cfg.file)?;
    let pending = store::load::<Pending>(&cfg.pending_file())?;
    let mut out = String::new();
    for (up, tools) in &pending.upstreams {
        for (name, p) in tools {
            let _ = writeln!(
                out,
                "{up}/{name}  sha256 {}  ({})",
                p.sha256,
                p.reasons.join(", ")
            );
            let before = pins.get(up, name);
            if before.is_none() {
                let _ = writeln!(out, "  not approved before");
            }
            let changes = store::diff(
                before.and_then(|b| b.definition.as_ref()),
                before.and_then(|b| b.instructions.as_deref()),
                &p.definition,
                p.instructions.as_deref(),
            );
            for (member, was, now) in changes {
                let _ = writeln!(out, "  {member}:");
                for l in was.iter().flat_map(|w| w.lines()) {
                    let _ = writeln!(out, "  - {l}");
                }
                for l in now.iter().flat_map(|n| n.lines()) {
                    let _ = writeln!(out, "  + {l}");
                }
            }
        }
    }
    if out.is_empty() {
        out.push_str("nothing is waiting for approval\n");
    }
    Ok(out)
}

/// Approves the pending definitions of `upstream` (all when `None`) named `tools` (all when
/// empty); the running gateway picks the pin file up within a second.
pub fn approve(
    cfg: &PinningConfig,
    upstream: Option<&str>,
    tools: &[String],
    now: u64,
) -> Result<String, String> {
    let select = |u: &str, t: &str| {
        upstream.is_none_or(|x| x == u) && (tools.is_empty() || tools.iter().any(|x| x == t))
    };
    let done = store::approve(&cfg.file, &cfg.pending_file(), &select, now)?;
    if done.is_empty() {
        return Err("no pending definition matches (see `palisade tools pending`)".into());
    }
    let mut out = String::new();
    for (u, t, sha) in done {
        let _ = writeln!(out, "approved {u}/{t}  sha256 {sha}");
    }
    Ok(out)
}
