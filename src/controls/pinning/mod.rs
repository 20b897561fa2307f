//! Tool pinning: the defence against an upstream that changes a tool after it was trusted (a
//! "rug pull") and against definitions written to steer the model (tool poisoning).
//!
//! Each tool definition is hashed ([`digest`]: every member but `_meta`, keys sorted, plus the
//! server's `initialize.instructions`) and compared with the pin file:
//!
//! - the same hash: shown and callable;
//! - a different hash: **withheld** from lists and calls (as if it did not exist, MCP-007) until
//!   an operator approves it (`palisade tools approve`); each changed member is audited
//!   (`pinning / pin_changed_<member>`), the change counted in
//!   `palisade_tool_pin_changes_total`, and the new definition kept in the pending file for
//!   review (`palisade tools pending` shows the diff);
//! - no pin: mode `tofu` pins it as first seen (written to the pin file, logged), mode
//!   `approve` withholds it like a changed one (audited `tool_unapproved`).
//!
//! Every definition is also scanned ([`scan`]) for invisible characters and configured
//! injection markers: flagged (audited, counted in `palisade_tool_flags_total`) and, with
//! `suspicious = "withhold"`, withheld unless an operator approved that exact definition.
//!
//! Verdicts are computed once per upstream list (lists are shared `Arc`s, replaced when the
//! upstream announces a change) and per pin-file generation; a call only looks its tool up.
//! Events are written once per definition, not per request.

pub mod review;
pub mod scan;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::SystemTime;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::{hex_lower, AuditHandle, AuditRecord, Decision, Text};
use crate::config::{PinMode, PinningConfig, Suspicious};
use store::{File, Pending, Pin};

/// A flag already reported: (upstream index, tool, definition digest).
type Reported = (usize, Box<str>, [u8; 32]);

/// Why a tool is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// Its definition differs from the approved one.
    Changed,
    /// Mode `approve`, and nobody approved it yet.
    Unapproved,
    /// Flagged, with `suspicious = "withhold"`.
    Suspicious,
}

impl Withheld {
    /// The audit reason of a refused call.
    pub fn reason(self) -> &'static str {
        match self {
            Withheld::Changed => "tool_changed",
            Withheld::Unapproved => "tool_unapproved",
            Withheld::Suspicious => "tool_suspicious",
        }
    }
}

/// What the gateway does with one tool definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Show it and let it be called.
    Pass,
    /// Hide it and refuse calls to it.
    Withheld(Withheld),
}

/// Verdicts of one upstream list, by tool name.
pub type Verdicts = HashMap<Box<str>, Verdict>;

/// The hash a pin holds: SHA-256 over a version tag, the server's instructions and the
/// definition without `_meta`, each as canonical JSON (object keys sorted, no spaces), so the
/// order an upstream happens to write members in does not matter.
pub fn digest(instructions: Option<&str>, tool: &Value) -> [u8; 32] {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"palisade-pin-v1\n");
    match instructions {
        Some(i) => canonical(&Value::String(i.to_owned()), &mut out),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'\n');
    match tool {
        Value::Object(o) => {
            let mut o = o.clone();
            o.remove("_meta");
            canonical(&Value::Object(o), &mut out);
        }
        other => canonical(other, &mut out),
    }
    Sha256::digest(&out).into()
}

fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(o) => {
            let mut members: Vec<_> = o.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(v, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// The audit reason for a changed member.
fn changed_reason(member: &str) -> &'static str {
    match member {
        "description" => "pin_changed_description",
        "inputSchema" => "pin_changed_input_schema",
        "outputSchema" => "pin_changed_output_schema",
        "annotations" => "pin_changed_annotations",
        "title" => "pin_changed_title",
        "instructions" => "pin_changed_instructions",
        _ => "pin_changed_other",
    }
}

struct Known {
    pins: File<Pin>,
    /// Bumped when the pin file is reloaded: cached verdicts from before are stale.
    generation: u64,
    /// The version of the file last read.
    seen: Stamp,
}

struct Cached {
    /// The list the verdicts are for (a weak reference keeps its address from being reused).
    list: Weak<Vec<Value>>,
    generation: u64,
    verdicts: Arc<Verdicts>,
}

/// What a judgement has to write.
#[derive(Default)]
struct Writes {
    first_seen: Vec<(String, String, Pin)>,
    pending: Vec<(String, String, Pending)>,
}

/// Most definitions remembered as already reported (beyond it the memory starts afresh, and
/// a definition still withheld is reported once more).
const MAX_REPORTED: usize = 50_000;

/// The pins and the verdicts derived from them.
pub struct Pins {
    cfg: PinningConfig,
    pending_file: PathBuf,
    names: Vec<Arc<str>>,
    known: RwLock<Known>,
    cache: Vec<RwLock<Vec<Cached>>>,
    reported: Mutex<HashSet<Reported>>,
    /// One writer of the files at a time (each write reads, merges and renames).
    writing: Arc<Mutex<()>>,
    /// Writes not known to be finished.
    jobs: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    audit: AuditHandle,
}

impl std::fmt::Debug for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pins")
            .field("mode", &self.cfg.mode)
            .field("file", &self.cfg.file)
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What identifies a version of the pin file: its modification time, and (files are replaced
/// by rename) its inode, since two writes may share a coarse timestamp.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(p: &std::path::Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.ino(), m.len()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Pins {
    /// Reads the pin file (a missing one is empty). One that cannot be read or parsed is an
    /// error: the gateway does not start on pins it cannot see.
    pub fn new(
        cfg: PinningConfig,
        names: Vec<Arc<str>>,
        audit: AuditHandle,
    ) -> Result<Pins, String> {
        let pins = if cfg.mode == PinMode::Off {
            File::default()
        } else {
            store::load(&cfg.file)?
        };
        Ok(Pins {
            pending_file: cfg.pending_file(),
            known: RwLock::new(Known {
                pins,
                generation: 0,
                seen: stamp(&cfg.file),
            }),
            cache: names.iter().map(|_| RwLock::default()).collect(),
            names,
            cfg,
            reported: Mutex::default(),
            writing: Arc::default(),
            jobs: Mutex::default(),
            audit,
        })
    }

    /// Whether pinning is on.
    pub fn active(&self) -> bool {
        self.cfg.mode != PinMode::Off
    }

    /// The verdicts on upstream `u`'s tool list (`None` when pinning is off), computed once
    /// per list and pin-file generation.
    pub fn verdicts(
        &self,
        u: usize,
        list: &Arc<Vec<Value>>,
        instructions: Option<&str>,
    ) -> Option<Arc<Verdicts>> {
        if !self.active() {
            return None;
        }
        // An upstream the pins do not know (never the case for a configured one) has nothing
        // judged: every tool of it is withheld.
        let Some(slot) = self.cache.get(u) else {
            return Some(Arc::default());
        };
        let generation = read(&self.known).generation;
        let same = |c: &Cached| std::ptr::eq(c.list.as_ptr(), Arc::as_ptr(list));
        if let Some(c) = read(slot)
            .iter()
            .find(|c| same(c) && c.generation == generation)
        {
            return Some(c.verdicts.clone());
        }
        let mut verdicts = Verdicts::with_capacity(list.len());
        let mut writes = Writes::default();
        for tool in list.iter() {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                if !verdicts.contains_key(name) {
                    let v = self.judge(u, instructions, tool, &mut writes);
                    verdicts.insert(name.into(), v);
                }
            }
        }
        self.save(writes);
        let verdicts = Arc::new(verdicts);
        let mut cached = write(slot);
        cached.retain(|c| c.list.strong_count() > 0 && !same(c));
        cached.push(Cached {
            list: Arc::downgrade(list),
            generation,
            verdicts: verdicts.clone(),
        });
        Some(verdicts)
    }

    /// The verdict on one tool of `u` as a client was shown it (a proxied route's list, which
    /// may differ from what the gateway's own upstream session sees). Not cached.
    pub fn verdict(&self, u: usize, instructions: Option<&str>, tool: &Value) -> Verdict {
        if !self.active() {
            return Verdict::Pass;
        }
        if u >= self.names.len() {
            return Verdict::Withheld(Withheld::Unapproved);
        }
        let mut writes = Writes::default();
        let v = self.judge(u, instructions, tool, &mut writes);
        self.save(writes);
        v
    }

    /// Writes what one judgement found, one write per file, in the background: pins first
    /// seen (an entry another writer put there first wins) and withheld definitions (the
    /// latest of each tool wins).
    fn save(&self, w: Writes) {
        if w.first_seen.is_empty() && w.pending.is_empty() {
            return;
        }
        let (pins, pending) = (self.cfg.file.clone(), self.pending_file.clone());
        self.persist(move || {
            if !w.first_seen.is_empty() {
                store::merge(&pins, w.first_seen, true)?;
            }
            if !w.pending.is_empty() {
                store::merge(&pending, w.pending, false)?;
            }
            Ok(())
        });
    }

    /// Compares one definition with its pin and scans it; reports (once per definition) what
    /// it finds, pins it on first sight in mode `tofu`, and keeps a withheld one for review
    /// (both added to `writes`, for the files).
    fn judge(
        &self,
        u: usize,
        instructions: Option<&str>,
        tool: &Value,
        writes: &mut Writes,
    ) -> Verdict {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return Verdict::Pass;
        };
        let up = &*self.names[u];
        let sha = digest(instructions, tool);
        let hex = hex::encode(sha);
        let flags = scan::scan(instructions, tool, &self.cfg.markers);
        let first = {
            let mut r = lock(&self.reported);
            if r.len() >= MAX_REPORTED {
                r.clear();
            }
            r.insert((u, name.into(), sha))
        };
        let pinned = read(&self.known).pins.get(up, name).cloned();
        let event = |reason: &'static str, decision| {
            if first {
                self.event(up, name, &sha, reason, decision);
            }
        };
        let mut reasons: Vec<&'static str> = Vec::new();
        let mut verdict = match &pinned {
            Some(p) if p.sha256 == hex => Verdict::Pass,
            Some(p) => {
                reasons.push("changed");
                if first {
                    metrics::counter!("palisade_tool_pin_changes_total", "upstream" => up.to_owned()).increment(1);
                    let members = match &p.definition {
                        Some(before) => {
                            store::diff(Some(before), p.instructions.as_deref(), tool, instructions)
                        }
                        None => Vec::new(),
                    };
                    if members.is_empty() {
                        event("pin_changed", Decision::Deny);
                    }
                    for (member, _, _) in &members {
                        event(changed_reason(member), Decision::Deny);
                    }
                    tracing::warn!(target: "palisade::pinning", upstream = up, tool = name, sha256 = %hex,
                        changed = ?members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
                        "tool definition changed since approval: withheld until `palisade tools approve`");
                }
                Verdict::Withheld(Withheld::Changed)
            }
            None if self.cfg.mode == PinMode::Tofu => {
                // Not an audit event (the pin file records when and how it was pinned): the
                // trail keeps what deviates from the pins.
                if let Some(pin) = self.pin_first_seen(up, name, &hex, instructions, tool) {
                    writes
                        .first_seen
                        .push((up.to_owned(), name.to_owned(), pin));
                    tracing::info!(target: "palisade::pinning", upstream = up, tool = name, sha256 = %hex, "tool pinned on first use");
                }
                Verdict::Pass
            }
            None => {
                reasons.push("unapproved");
                event("tool_unapproved", Decision::Deny);
                Verdict::Withheld(Withheld::Unapproved)
            }
        };
        if !flags.is_empty() {
            let approved_as_is = pinned
                .as_ref()
                .is_some_and(|p| p.sha256 == hex && p.by == "operator");
            let withhold = self.cfg.suspicious == Suspicious::Withhold && !approved_as_is;
            for f in &flags {
                reasons.push(f.reason());
                if first {
                    metrics::counter!("palisade_tool_flags_total", "upstream" => up.to_owned(), "kind" => f.label()).increment(1);
                    tracing::warn!(target: "palisade::pinning", upstream = up, tool = name, flag = f.label(), withheld = withhold, "suspicious tool definition");
                }
                event(
                    f.reason(),
                    if withhold {
                        Decision::Deny
                    } else {
                        Decision::Allow
                    },
                );
            }
            if withhold && verdict == Verdict::Pass {
                verdict = Verdict::Withheld(Withheld::Suspicious);
            }
        }
        if first && verdict != Verdict::Pass {
            let entry = Pending {
                sha256: hex,
                definition: tool.clone(),
                instructions: instructions.map(str::to_owned),
                seen_at: unix_now(),
                reasons: reasons.into_iter().map(str::to_owned).collect(),
            };
            writes.pending.push((up.to_owned(), name.to_owned(), entry));
        }
        verdict
    }

    /// Trust on first use: pins a definition in memory; the pin, for the file, unless it was
    /// already pinned.
    fn pin_first_seen(
        &self,
        up: &str,
        name: &str,
        hex: &str,
        instructions: Option<&str>,
        tool: &Value,
    ) -> Option<Pin> {
        let pin = Pin {
            sha256: hex.to_owned(),
            definition: Some(tool.clone()),
            instructions: instructions.map(str::to_owned),
            at: unix_now(),
            by: "tofu".into(),
        };
        {
            let mut k = write(&self.known);
            if k.pins.get(up, name).is_some() {
                return None;
            }
            k.pins.set(up, name, pin.clone());
        }
        Some(pin)
    }

    /// Runs a file write off the request path, one at a time.
    fn persist(&self, job: impl FnOnce() -> Result<(), String> + Send + 'static) {
        let writing = self.writing.clone();
        let run = move || {
            let _one = lock(&writing);
            if let Err(e) = job() {
                tracing::error!(target: "palisade::pinning", error = %e, "pin file not written");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let job = h.spawn_blocking(run);
                let mut jobs = lock(&self.jobs);
                jobs.retain(|j| !j.is_finished());
                jobs.push(job);
            }
            Err(_) => run(),
        }
    }

    /// Waits for the file writes started so far (at shutdown, and in tests).
    pub async fn flush(&self) {
        let jobs = std::mem::take(&mut *lock(&self.jobs));
        for j in jobs {
            let _ = j.await;
        }
    }

    fn event(
        &self,
        up: &str,
        tool: &str,
        sha: &[u8; 32],
        reason: &'static str,
        decision: Decision,
    ) {
        let mut r = AuditRecord::event("internal", "pinning", reason, decision);
        r.request_id = Text::copy(&crate::app::new_request_id());
        r.principal = Text::fixed("gateway");
        r.upstream = Some(Text::copy(up));
        r.rpc_method = Some(Text::fixed("tools/list"));
        r.tool = Some(Text::copy(tool));
        r.input_hash = Some(hex_lower(sha));
        if decision == Decision::Deny {
            r.error_code = Some(Text::fixed("MCP-007"));
        }
        self.audit.write_later(r);
    }

    /// Reads the pin file again if it changed on disk (an operator approved something); a
    /// file that no longer parses is logged and the pins in memory are kept.
    pub fn reload_if_changed(&self) -> bool {
        if !self.active() {
            return false;
        }
        let now = stamp(&self.cfg.file);
        if now == read(&self.known).seen {
            return false;
        }
        let _one = lock(&self.writing);
        match store::load::<Pin>(&self.cfg.file) {
            Ok(pins) => {
                let mut k = write(&self.known);
                k.pins = pins;
                k.generation += 1;
                k.seen = now;
                tracing::info!(target: "palisade::pinning", file = %self.cfg.file.display(), "pin file reloaded");
                true
            }
            Err(e) => {
                write(&self.known).seen = now;
                tracing::error!(target: "palisade::pinning", error = %e, "pin file unreadable: keeping the pins in memory");
                false
            }
        }
    }

    /// Reloads the pin file when it changes, once a second, until the gateway stops.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}

#[cfg(test)]
mod tests;
