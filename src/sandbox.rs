//! Starting stdio children confined: the gateway runs each one through its own hidden
//! `stdio-exec` subcommand, a small supervisor that, before starting the server program,
//! - checks it is its own process-group leader (the gateway spawns it with `process_group(0)`),
//!   so killing the group never reaches the gateway;
//! - sets `RLIMIT_CORE=0`, `RLIMIT_DATA`, `RLIMIT_NOFILE` and, if configured, `RLIMIT_NPROC`;
//! - sets no-new-privileges and applies a Landlock filesystem ruleset (read+execute paths,
//!   read-write paths; everything else refused by the kernel), failing closed when the config
//!   requires Landlock and the kernel cannot fully enforce it;
//! - then starts the program and waits on two pidfds, the program's and the gateway's. When the
//!   gateway process is gone (even after `kill -9`), the supervisor kills its whole process
//!   group, grandchildren included. A pidfd follows the whole gateway process, unlike the
//!   parent-death signal, which fires when the *thread* that forked exits (tokio may spawn from
//!   a blocking-pool thread that exits after idling).
//!
//! Written here rather than taken from a crate: no crate combines these steps, and each step is
//! a safe call of `rustix` or `landlock` (the crate forbids `unsafe`).

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Command;

use landlock::{
    path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{
    getpgrp, getpid, getppid, kill_process_group, pidfd_open, set_child_subreaper, setrlimit, Pid,
    PidfdFlags, Resource, Rlimit, Signal,
};

use crate::config::{Landlock, StdioTarget};

/// The Landlock ABI the rules are written for (Linux 6.10+: filesystem rights, signal and
/// abstract-socket scoping). Newer kernels enforce it fully; older ones partially.
const LANDLOCK_ABI: ABI = ABI::V6;

/// Exit code of the supervisor when the sandbox could not be applied (the program never ran).
pub const SANDBOX_FAILED: i32 = 125;

/// The command that starts `target` for upstream `name` through the supervisor: minimal
/// environment, its own process group, working directory the program's.
pub fn command(name: &str, target: &StdioTarget) -> std::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let s = &target.sandbox;
    let mut c = Command::new(exe);
    c.arg("stdio-exec")
        .arg("--upstream")
        .arg(name)
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .arg("--landlock")
        .arg(s.landlock.as_str())
        .arg("--nofile")
        .arg(s.max_open_files.to_string());
    if let Some(m) = s.memory_bytes {
        c.arg("--data").arg(m.to_string());
    }
    if let Some(n) = s.max_processes {
        c.arg("--nproc").arg(n.to_string());
    }
    for p in &s.read_paths {
        c.arg("--ro").arg(p);
    }
    for p in &s.write_paths {
        c.arg("--rw").arg(p);
    }
    c.arg("--").arg(&target.command).args(&target.args);
    c.env_clear();
    for k in ["PATH", "HOME", "LANG"] {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    c.envs(target.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = target.command.parent() {
        c.current_dir(dir);
    }
    c.process_group(0);
    c
}

/// Kills the process group of a supervisor (`pid` leads it): the program and everything it
/// started. Best effort; the group may already be gone.
pub fn kill_group(pid: Option<u32>) {
    if let Some(p) = pid.and_then(|p| Pid::from_raw(p as i32)) {
        let _ = kill_process_group(p, Signal::KILL);
    }
}

/// Options of `palisade stdio-exec` (written by [`command`], not by people).
#[derive(Debug, Default, clap::Args)]
pub struct ExecArgs {
    /// Upstream name (for messages).
    #[arg(long)]
    pub upstream: String,
    /// The gateway's pid.
    #[arg(long)]
    pub parent_pid: i32,
    /// Landlock policy: `off`, `best-effort` or `required`.
    #[arg(long, default_value = "best-effort")]
    pub landlock: String,
    /// `RLIMIT_DATA` in bytes.
    #[arg(long)]
    pub data: Option<u64>,
    /// `RLIMIT_NPROC`.
    #[arg(long)]
    pub nproc: Option<u64>,
    /// `RLIMIT_NOFILE`.
    #[arg(long, default_value_t = 1024)]
    pub nofile: u64,
    /// Read+execute paths.
    #[arg(long)]
    pub ro: Vec<PathBuf>,
    /// Read-write paths.
    #[arg(long)]
    pub rw: Vec<PathBuf>,
    /// Program and arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

/// Runs the supervisor; returns the process exit code (the program's, `128 + signal` if a
/// signal ended it, [`SANDBOX_FAILED`] if it never ran).
pub fn exec(a: ExecArgs) -> i32 {
    match confine(&a) {
        Ok(note) => {
            if let Some(n) = note {
                eprintln!("palisade stdio-exec [{}]: {n}", a.upstream);
            }
        }
        Err(e) => {
            eprintln!(
                "palisade stdio-exec [{}]: refusing to start: {e}",
                a.upstream
            );
            return SANDBOX_FAILED;
        }
    }
    let Some((program, args)) = a.command.split_first() else {
        eprintln!("palisade stdio-exec: no program");
        return SANDBOX_FAILED;
    };
    supervise(&a, Command::new(program).args(args))
}

fn limit(r: Resource, v: u64) -> rustix::io::Result<()> {
    setrlimit(
        r,
        Rlimit {
            current: Some(v),
            maximum: Some(v),
        },
    )
}

/// Process group, limits, no-new-privileges and Landlock. `Ok(Some(note))` when Landlock is
/// weaker than asked but the policy allows it.
fn confine(a: &ExecArgs) -> Result<Option<String>, String> {
    if getpgrp() != getpid() {
        return Err("not a process-group leader".into());
    }
    fn e(what: &'static str) -> impl Fn(rustix::io::Errno) -> String {
        move |err| format!("{what}: {err}")
    }
    limit(Resource::Core, 0).map_err(e("RLIMIT_CORE"))?;
    limit(Resource::Nofile, a.nofile).map_err(e("RLIMIT_NOFILE"))?;
    if let Some(d) = a.data {
        limit(Resource::Data, d).map_err(e("RLIMIT_DATA"))?;
    }
    if let Some(n) = a.nproc {
        limit(Resource::Nproc, n).map_err(e("RLIMIT_NPROC"))?;
    }
    rustix::thread::set_no_new_privs(true).map_err(e("no_new_privs"))?;
    let policy = match a.landlock.as_str() {
        "off" => Landlock::Off,
        "required" => Landlock::Required,
        _ => Landlock::BestEffort,
    };
    if policy == Landlock::Off {
        return Ok(None);
    }
    let required = policy == Landlock::Required;
    let abi = LANDLOCK_ABI;
    let mut rw = a.rw.clone();
    rw.push(PathBuf::from("/dev/null"));
    let ruleset = Ruleset::default()
        .set_compatibility(if required {
            CompatLevel::HardRequirement
        } else {
            CompatLevel::BestEffort
        })
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(&a.ro, AccessFs::from_read(abi))))
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                &rw,
                AccessFs::from_all(abi) & !AccessFs::Execute,
            ))
        })
        .map_err(|err| format!("landlock: {err}"))?;
    let status = ruleset
        .restrict_self()
        .map_err(|err| format!("landlock: {err}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(None),
        s if required => Err(format!("landlock required but {s:?} by this kernel")),
        RulesetStatus::PartiallyEnforced => Ok(Some(
            "landlock only partially enforced by this kernel".into(),
        )),
        _ => Ok(Some(
            "landlock is not available on this kernel: no filesystem restriction".into(),
        )),
    }
}

fn supervise(a: &ExecArgs, cmd: &mut Command) -> i32 {
    // Orphans of the program become ours, so they stay in reach of the group kill.
    let _ = set_child_subreaper(Some(getpid()));
    let Some(parent) = Pid::from_raw(a.parent_pid) else {
        return SANDBOX_FAILED;
    };
    let Ok(parent_fd) = pidfd_open(parent, PidfdFlags::empty()) else {
        return SANDBOX_FAILED; // the gateway is already gone
    };
    // Opened the pidfd, then checked: the gateway cannot have died unnoticed in between.
    if getppid() != Some(parent) {
        return SANDBOX_FAILED;
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("palisade stdio-exec [{}]: cannot start: {err}", a.upstream);
            return 127;
        }
    };
    let Some(child_fd) =
        Pid::from_raw(child.id() as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
    else {
        let _ = child.kill();
        return SANDBOX_FAILED;
    };
    loop {
        let mut fds = [
            PollFd::new(&parent_fd, PollFlags::IN),
            PollFd::new(&child_fd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {
                // Cannot watch the gateway any more: do not leave an unwatched child behind.
                let _ = kill_process_group(getpid(), Signal::KILL);
                return SANDBOX_FAILED;
            }
        }
        if !fds[0].revents().is_empty() {
            // The gateway is gone: take everything we started with us.
            let _ = kill_process_group(getpid(), Signal::KILL);
            return 137;
        }
        if !fds[1].revents().is_empty() {
            let code = match child.wait() {
                Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
                Err(_) => 1,
            };
            // Whatever the program left behind in the group is killed by the gateway, which
            // holds this process unreaped (its pid, hence the group id, stays reserved) until then.
            return code;
        }
    }
}
