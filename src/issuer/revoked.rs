//! Revoked token ids: `<data_dir>/revoked-jti.txt`, one `jti expiry` per line, appended by
//! `palisade token revoke` and reloaded by the running gateway when the file changes. Entries
//! past their expiry are ignored (the token is dead anyway).

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Path of the revocation list in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("revoked-jti.txt")
}

/// Appends a revocation.
pub fn revoke(data_dir: &Path, jti: &str, until: u64) -> std::io::Result<()> {
    if jti.is_empty() || jti.len() > 256 || jti.contains(char::is_whitespace) {
        return Err(std::io::Error::other(
            "a jti is 1-256 characters without spaces",
        ));
    }
    std::fs::create_dir_all(data_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path(data_dir))?;
    writeln!(f, "{jti} {until}")?;
    f.sync_all()
}

/// The ids still worth refusing at `now`.
pub fn load(data_dir: &Path, now: u64) -> std::io::Result<HashSet<Box<str>>> {
    let text = match std::fs::read_to_string(path(data_dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (jti, until) = l.split_once(' ')?;
            let until: u64 = until.trim().parse().ok()?;
            (until >= now).then(|| Box::from(jti))
        })
        .collect())
}
