//! The hub (`/mcp`, every upstream behind one endpoint) and stdio upstreams: raw keys and their
//! validated forms.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::auth::{self, AuthConfig, Combo};
use super::validated::Errors;

/// `[hub]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHub {
    /// Serve the aggregated endpoint `/mcp` (default true).
    pub enabled: Option<bool>,
    /// Authentication for `/mcp`, replacing `auth.methods` (same syntax as `upstream.auth`).
    pub auth: Option<Vec<String>>,
    /// OAuth scopes a token must carry for `/mcp`.
    pub required_scopes: Option<Vec<String>>,
    /// Most items in one page of a merged list (default 500); longer lists get `nextCursor`.
    pub page_size: Option<u64>,
}

/// `[stdio]`: limits shared by every stdio upstream.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStdio {
    /// Most live stdio children over all upstreams (default 32); beyond it new ones are refused.
    pub max_children: Option<u64>,
    /// Seconds a child may sit unused before it is stopped (default 600).
    pub idle_timeout_secs: Option<u64>,
    /// First restart delay after a child dies, in milliseconds; doubled per consecutive failure
    /// (default 250).
    pub restart_backoff_ms: Option<u64>,
    /// Longest restart delay, in milliseconds (default 30000).
    pub restart_backoff_max_ms: Option<u64>,
}

/// `[upstream.sandbox]`: what a stdio child may do.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    /// Linux Landlock filesystem restriction: `best-effort` (default: enforced when the kernel
    /// can, a warning otherwise), `required` (the child is not started without it) or `off`.
    pub landlock: Option<String>,
    /// Paths the child may read and execute, besides the system directories (`/usr`, `/lib`,
    /// `/lib64`, `/bin`, `/etc`, `/proc`, `/dev`, `/sys`) and the directory of its program.
    #[serde(default)]
    pub read_paths: Vec<String>,
    /// Paths the child may read and write.
    #[serde(default)]
    pub write_paths: Vec<String>,
    /// Address-space limit in MiB (`RLIMIT_AS`; default unlimited: runtimes such as Node reserve
    /// large virtual ranges).
    pub memory_mb: Option<u64>,
    /// Process limit (`RLIMIT_NPROC`: counts every process of the gateway's user; default none).
    pub max_processes: Option<u64>,
    /// Open-file limit (`RLIMIT_NOFILE`, default 1024).
    pub max_open_files: Option<u64>,
}

/// Who shares one upstream session (or stdio child).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// One per downstream session.
    PerSession,
    /// One per principal (the default).
    PerPrincipal,
    /// One for everybody: an explicit opt-in.
    Shared,
}

/// Which protocol era the hub speaks to an upstream (`[[upstream]] protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// `initialize` first; when the upstream refuses it, 2026-07-28 (`server/discover`).
    Auto,
    /// Only the `initialize` era (2024-11-05 to 2025-11-25).
    Legacy,
    /// Only 2026-07-28 (stateless requests), even when the upstream also speaks legacy.
    Modern,
}

pub(super) fn upstream_protocol(p: &str, raw: Option<&str>, e: &mut Errors) -> UpstreamProtocol {
    match raw {
        None | Some("auto") => UpstreamProtocol::Auto,
        Some("legacy") => UpstreamProtocol::Legacy,
        Some("modern") => UpstreamProtocol::Modern,
        Some(other) => {
            e.push(
                format!("{p}.protocol"),
                format!("must be \"auto\", \"legacy\" or \"modern\", got {other:?}"),
            );
            UpstreamProtocol::Auto
        }
    }
}

impl Isolation {
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::PerSession => "per-session",
            Isolation::PerPrincipal => "per-principal",
            Isolation::Shared => "shared",
        }
    }
}

/// Landlock policy for a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landlock {
    /// Not applied.
    Off,
    /// Applied as far as the kernel supports it.
    BestEffort,
    /// The child does not start unless fully enforced.
    Required,
}

impl Landlock {
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Landlock::Off => "off",
            Landlock::BestEffort => "best-effort",
            Landlock::Required => "required",
        }
    }
}

/// `[upstream.sandbox]`, validated.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Landlock policy.
    pub landlock: Landlock,
    /// Read-and-execute paths (absolute), system directories included.
    pub read_paths: Vec<PathBuf>,
    /// Read-write paths (absolute).
    pub write_paths: Vec<PathBuf>,
    /// `RLIMIT_AS` in bytes.
    pub memory_bytes: Option<u64>,
    /// `RLIMIT_NPROC`.
    pub max_processes: Option<u64>,
    /// `RLIMIT_NOFILE`.
    pub max_open_files: u64,
}

/// A stdio upstream, validated.
#[derive(Debug, Clone)]
pub struct StdioTarget {
    /// The program, resolved to an absolute path at load (never from a request).
    pub command: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment given to the child besides the minimal base (`PATH`, `HOME`, `LANG`).
    pub env: Vec<(String, String)>,
    /// Start at boot rather than on first use.
    pub at_boot: bool,
    /// Sandbox.
    pub sandbox: SandboxConfig,
}

/// `[hub]`, validated.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// `/mcp` is served.
    pub enabled: bool,
    /// Accepted authentication at `/mcp`.
    pub auth: Vec<Combo>,
    /// `[hub].auth`, if set (wins over a listener's `methods`).
    pub auth_own: Option<Vec<Combo>>,
    /// OAuth scopes required at `/mcp`.
    pub required_scopes: Vec<String>,
    /// Most items in one page of a merged list.
    pub page_size: usize,
}

/// `[stdio]`, validated.
#[derive(Debug, Clone)]
pub struct StdioLimits {
    /// Most live children.
    pub max_children: usize,
    /// Idle time before a child is stopped.
    pub idle_timeout: Duration,
    /// First restart delay.
    pub backoff: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
}

/// System directories a child may read and execute from (dynamic loader, libraries,
/// certificates, time zones, `/proc/self`).
const SYSTEM_READ: &[&str] = &[
    "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/dev", "/sys", "/opt",
];

pub(super) fn hub(raw: RawHub, auth: &AuthConfig, e: &mut Errors) -> HubConfig {
    let auth_own = raw.auth.as_ref().map(|list| {
        let c = auth::combos("hub.auth", list, e);
        auth::check_usable("hub.auth", &c, auth, e);
        c
    });
    let required_scopes = match (raw.required_scopes, &auth.oauth) {
        (Some(s), Some(_)) => s,
        (Some(_), None) => {
            e.push(
                "hub.required_scopes",
                "needs [auth.oauth] (scopes come from OAuth access tokens)",
            );
            Vec::new()
        }
        (None, Some(o)) => o.required_scopes.clone(),
        (None, None) => Vec::new(),
    };
    HubConfig {
        enabled: raw.enabled.unwrap_or(true),
        auth: auth_own.clone().unwrap_or_else(|| auth.methods.clone()),
        auth_own,
        required_scopes,
        page_size: e.range("hub.page_size", raw.page_size, 500, 1, 100_000) as usize,
    }
}

pub(super) fn stdio_limits(raw: RawStdio, e: &mut Errors) -> StdioLimits {
    StdioLimits {
        max_children: e.range("stdio.max_children", raw.max_children, 32, 1, 10_000) as usize,
        idle_timeout: Duration::from_secs(e.range(
            "stdio.idle_timeout_secs",
            raw.idle_timeout_secs,
            600,
            1,
            86_400,
        )),
        backoff: Duration::from_millis(e.range(
            "stdio.restart_backoff_ms",
            raw.restart_backoff_ms,
            250,
            1,
            60_000,
        )),
        backoff_max: Duration::from_millis(e.range(
            "stdio.restart_backoff_max_ms",
            raw.restart_backoff_max_ms,
            30_000,
            1,
            3_600_000,
        )),
    }
}

pub(super) fn isolation(p: &str, raw: Option<&str>, e: &mut Errors) -> Isolation {
    match raw {
        None | Some("per-principal") => Isolation::PerPrincipal,
        Some("per-session") => Isolation::PerSession,
        Some("shared") => Isolation::Shared,
        Some(other) => {
            e.push(
                format!("{p}.isolation"),
                format!("must be \"per-session\", \"per-principal\" or \"shared\", got {other:?}"),
            );
            Isolation::PerPrincipal
        }
    }
}

/// The stdio keys of one `[[upstream]]`.
pub(super) struct RawStdioUpstream {
    pub(super) command: String,
    pub(super) args: Vec<String>,
    pub(super) env: BTreeMap<String, String>,
    pub(super) start: Option<String>,
    pub(super) sandbox: Option<RawSandbox>,
}

pub(super) fn stdio_target(
    p: &str,
    raw: RawStdioUpstream,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> Option<StdioTarget> {
    let before = e.0.len();
    let command = match resolve_command(&raw.command, env("PATH").as_deref()) {
        Ok(c) => Some(c),
        Err(w) => {
            e.push(format!("{p}.command"), w);
            None
        }
    };
    let mut child_env = Vec::new();
    for (k, v) in raw.env {
        if k.is_empty() || k.contains(['=', '\0']) {
            e.push(format!("{p}.env.{k}"), "not a valid variable name");
            continue;
        }
        match super::validated::expand(&v, env) {
            Ok(v) => child_env.push((k, v)),
            Err(w) => e.push(format!("{p}.env.{k}"), w),
        }
    }
    let at_boot = match raw.start.as_deref() {
        None | Some("lazy") => false,
        Some("boot") => true,
        Some(other) => {
            e.push(
                format!("{p}.start"),
                format!("must be \"lazy\" or \"boot\", got {other:?}"),
            );
            false
        }
    };
    let s = raw.sandbox.unwrap_or_default();
    let landlock = match s.landlock.as_deref() {
        None | Some("best-effort") => Landlock::BestEffort,
        Some("required") => Landlock::Required,
        Some("off") => Landlock::Off,
        Some(other) => {
            e.push(
                format!("{p}.sandbox.landlock"),
                format!("must be \"best-effort\", \"required\" or \"off\", got {other:?}"),
            );
            Landlock::BestEffort
        }
    };
    let mut paths = |key: &str, list: Vec<String>| -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (i, s) in list.into_iter().enumerate() {
            match super::validated::expand(&s, env) {
                Ok(s) if Path::new(&s).is_absolute() => out.push(PathBuf::from(s)),
                Ok(_) => e.push(
                    format!("{p}.sandbox.{key}[{i}]"),
                    "must be an absolute path",
                ),
                Err(w) => e.push(format!("{p}.sandbox.{key}[{i}]"), w),
            }
        }
        out
    };
    let mut read_paths: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    read_paths.extend(paths("read_paths", s.read_paths));
    let write_paths = paths("write_paths", s.write_paths);
    if let Some(dir) = command.as_ref().and_then(|c| c.parent()) {
        read_paths.push(dir.to_path_buf());
    }
    let memory_bytes = s
        .memory_mb
        .map(|m| e.range(&format!("{p}.sandbox.memory_mb"), Some(m), 0, 16, 1 << 20) << 20);
    let max_processes = s.max_processes.map(|n| {
        e.range(
            &format!("{p}.sandbox.max_processes"),
            Some(n),
            0,
            1,
            1 << 20,
        )
    });
    let max_open_files = e.range(
        &format!("{p}.sandbox.max_open_files"),
        s.max_open_files,
        1024,
        16,
        1 << 20,
    );
    if e.0.len() != before {
        return None;
    }
    Some(StdioTarget {
        command: command?,
        args: raw.args,
        env: child_env,
        at_boot,
        sandbox: SandboxConfig {
            landlock,
            read_paths,
            write_paths,
            memory_bytes,
            max_processes,
            max_open_files,
        },
    })
}

/// An absolute path as given, or the first executable of that name on `path`. Resolved once at
/// load: the program never comes from a request, and a missing one is a start-up error.
fn resolve_command(cmd: &str, path: Option<&str>) -> Result<PathBuf, String> {
    if cmd.is_empty() {
        return Err("must not be empty".into());
    }
    let p = Path::new(cmd);
    if p.is_absolute() {
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(format!("{cmd} is not an executable file"))
        };
    }
    if cmd.contains('/') {
        return Err("must be an absolute path or a program name found on PATH".into());
    }
    for dir in path
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
    {
        let c = Path::new(dir).join(cmd);
        if Path::new(dir).is_absolute() && is_executable(&c) {
            return Ok(c);
        }
    }
    Err(format!("{cmd} not found on PATH"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_on_path_or_absolute_only() {
        let sh = resolve_command("sh", Some("/nonexistent:/bin:/usr/bin")).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert!(resolve_command("./sh", Some("/bin")).is_err());
        assert!(resolve_command("bin/sh", Some("/")).is_err());
        assert!(resolve_command("no-such-program-here", Some("/bin")).is_err());
        // Relative PATH entries are ignored: the working directory is not a search path.
        assert!(resolve_command("sh", Some(".:bin")).is_err());
        let plain = std::env::temp_dir().join(format!("palisade-not-exec-{}", std::process::id()));
        std::fs::write(&plain, b"x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(resolve_command(plain.to_str().unwrap(), None).is_err());
        let _ = std::fs::remove_file(plain);
    }
}
