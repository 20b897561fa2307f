//! The pin file and the file of definitions waiting for approval: JSON, written whole to a
//! temporary file and renamed over the old one, so a reader never sees half a file.
//!
//! Two processes write them: the gateway (pins first seen, definitions withheld) and
//! `palisade tools approve`. Every read-modify-write holds an exclusive advisory lock on a
//! `.lock` file beside its file for its whole length, so neither can write back a copy it read
//! before the other's write (which lost an operator's approval under load).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Format version of both files.
pub const VERSION: u32 = 1;

/// One approved definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Hex SHA-256 of the definition and the server's instructions (see `pinning::digest`).
    pub sha256: String,
    /// The definition as approved (for diffs; the hash decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<Value>,
    /// The server's `initialize.instructions` it was approved with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Unix seconds of the approval.
    #[serde(default)]
    pub at: u64,
    /// `tofu` (first seen) or `operator`.
    #[serde(default)]
    pub by: String,
}

/// A definition the gateway withheld: changed since approval, never approved, or flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// Its hash.
    pub sha256: String,
    /// The definition as the upstream gave it.
    pub definition: Value,
    /// The server's instructions at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Unix seconds when first withheld.
    pub seen_at: u64,
    /// Why: `changed`, `unapproved`, `suspicious_invisible`, `suspicious_marker`.
    pub reasons: Vec<String>,
}

/// Entries by upstream name, then tool name.
pub type ByUpstream<T> = BTreeMap<String, BTreeMap<String, T>>;

/// A whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File<T> {
    /// [`VERSION`].
    pub version: u32,
    /// Entries.
    pub upstreams: ByUpstream<T>,
}

impl<T> Default for File<T> {
    fn default() -> Self {
        File {
            version: VERSION,
            upstreams: BTreeMap::new(),
        }
    }
}

impl<T> File<T> {
    /// The entry of `upstream`'s `tool`.
    pub fn get(&self, upstream: &str, tool: &str) -> Option<&T> {
        self.upstreams.get(upstream)?.get(tool)
    }

    /// Sets the entry of `upstream`'s `tool`.
    pub fn set(&mut self, upstream: &str, tool: &str, entry: T) {
        self.upstreams
            .entry(upstream.to_owned())
            .or_default()
            .insert(tool.to_owned(), entry);
    }

    /// Removes the entry of `upstream`'s `tool`.
    pub fn remove(&mut self, upstream: &str, tool: &str) -> Option<T> {
        let tools = self.upstreams.get_mut(upstream)?;
        let gone = tools.remove(tool);
        if tools.is_empty() {
            self.upstreams.remove(upstream);
        }
        gone
    }
}

/// Reads a file; a missing one is empty. An unreadable or malformed one is an error (the
/// caller decides: refuse to start, or keep what it had).
pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<File<T>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: File<T> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a pin file: {e}", path.display()))?;
    if file.version != VERSION {
        return Err(format!(
            "{}: version {} (this gateway reads {VERSION})",
            path.display(),
            file.version
        ));
    }
    Ok(file)
}

/// Takes the exclusive advisory lock of `path` (on `<path>.lock`, created if needed), released
/// when the returned file is dropped. Blocks while another writer, in this process or another,
/// holds it.
fn lock(path: &Path) -> Result<std::fs::File, String> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let name = std::path::PathBuf::from(name);
    let fail = |e: std::io::Error| format!("cannot lock {}: {e}", name.display());
    if let Some(dir) = name.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(fail)?;
    f.lock().map_err(fail)?;
    Ok(f)
}

/// Writes a file atomically (temporary file in the same directory, then rename).
pub fn save<T: Serialize>(path: &Path, file: &File<T>) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let mut bytes = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(&bytes).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Adds entries to a file on disk, keeping what is there (another writer, e.g. an operator's
/// `palisade tools approve`, may have changed it since this process read it). `keep_existing`:
/// an entry already on disk wins (first-seen pins); otherwise the new one replaces it.
pub fn merge<T: Serialize + for<'de> Deserialize<'de>>(
    path: &Path,
    entries: Vec<(String, String, T)>,
    keep_existing: bool,
) -> Result<(), String> {
    let _lock = lock(path)?;
    let mut file = load::<T>(path)?;
    for (up, tool, entry) in entries {
        if keep_existing && file.get(&up, &tool).is_some() {
            continue;
        }
        file.set(&up, &tool, entry);
    }
    save(path, &file)
}

/// Moves pending entries into the pin file (operator approval). `select` picks entries by
/// upstream and tool name. Returns what was approved.
pub fn approve(
    pins_path: &Path,
    pending_path: &Path,
    select: &dyn Fn(&str, &str) -> bool,
    now: u64,
) -> Result<Vec<(String, String, String)>, String> {
    // Always the pin file's lock first: the gateway never holds one while waiting for the
    // other, so the two cannot wait on each other.
    let _pins_lock = lock(pins_path)?;
    let _pending_lock = lock(pending_path)?;
    let mut pins = load::<Pin>(pins_path)?;
    let mut pending = load::<Pending>(pending_path)?;
    let chosen: Vec<(String, String)> = pending
        .upstreams
        .iter()
        .flat_map(|(u, tools)| tools.keys().map(move |t| (u.clone(), t.clone())))
        .filter(|(u, t)| select(u, t))
        .collect();
    let mut done = Vec::with_capacity(chosen.len());
    for (u, t) in chosen {
        let Some(p) = pending.remove(&u, &t) else {
            continue;
        };
        done.push((u.clone(), t.clone(), p.sha256.clone()));
        pins.set(
            &u,
            &t,
            Pin {
                sha256: p.sha256,
                definition: Some(p.definition),
                instructions: p.instructions,
                at: now,
                by: "operator".into(),
            },
        );
    }
    if !done.is_empty() {
        // Pins first: a crash between the two writes leaves an approved entry still listed as
        // pending, which approving again fixes; the other order could lose the approval.
        save(pins_path, &pins)?;
        save(pending_path, &pending)?;
    }
    Ok(done)
}

/// The differences between an approved definition and a new one, member by member, as
/// `(member, before, after)` with pretty JSON (`None`: absent).
pub fn diff(
    before: Option<&Value>,
    before_instructions: Option<&str>,
    after: &Value,
    after_instructions: Option<&str>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let mut out = Vec::new();
    if before_instructions != after_instructions {
        out.push((
            "instructions".to_owned(),
            before_instructions.map(str::to_owned),
            after_instructions.map(str::to_owned),
        ));
    }
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if k == "_meta" {
            continue;
        }
        let (x, y) = (b.get(k), a.get(k));
        if x != y {
            out.push((k.clone(), x.map(pretty), y.map(pretty)));
        }
    }
    out
}
