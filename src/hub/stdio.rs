//! stdio upstreams: one child process per link, newline-delimited JSON-RPC on its stdin and
//! stdout, stderr into the gateway's log under the upstream's name.
//!
//! The child is started through the gateway's own `stdio-exec` launcher ([`crate::sandbox`]),
//! which applies the sandbox and ties the child's life to the gateway's, in its own process
//! group. Dropping the link kills the whole group.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::link::{Answer, Bounds};
use super::HubError;
use crate::config::StdioTarget;
use crate::proto::{Envelope, Id, Kind};

type Pending = Arc<Mutex<HashMap<i64, mpsc::Sender<Envelope>>>>;

/// How a child ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Exit status as text (`exit status: 1`, `signal: 9 (SIGKILL)`).
    pub status: String,
    /// The gateway stopped it (idle, session end, shutdown) rather than it dying on its own.
    pub stopped: bool,
}

/// A running stdio child.
#[derive(Debug)]
pub struct StdioLink {
    stdin: mpsc::Sender<Bytes>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    pid: Option<u32>,
    kill: Option<oneshot::Sender<()>>,
}

impl Drop for StdioLink {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }
}

/// What a child sends that belongs to no request (list changes, requests outside a call).
pub type Unsolicited = mpsc::Sender<Envelope>;

impl StdioLink {
    /// Starts `target` for upstream `name`. `on_exit` runs once when the child is gone.
    pub fn spawn(
        name: &str,
        target: &StdioTarget,
        bounds: Bounds,
        unsolicited: Unsolicited,
        on_exit: impl FnOnce(Exit) + Send + 'static,
    ) -> Result<Self, HubError> {
        let mut cmd: Command = crate::sandbox::command(name, target).into();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            HubError::Upstream(format!("cannot start {}: {e}", target.command.display()))
        })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(HubError::Upstream("child has no pipes".into()));
        };
        let alive = Arc::new(AtomicBool::new(true));
        let stopped = Arc::new(AtomicBool::new(false));
        let pending: Pending = Arc::default();
        // stdin: one writer, fed by a channel, so concurrent callers never interleave lines.
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(line) = rx.recv().await {
                if stdin.write_all(&line).await.is_err()
                    || stdin.write_all(b"\n").await.is_err()
                    || stdin.flush().await.is_err()
                {
                    break;
                }
            }
        });
        // stderr: into the log, line by line, bounded.
        let label = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let l: String = l.chars().take(2000).collect();
                tracing::info!(target: "palisade::stdio", upstream = %label, "{l}");
            }
        });
        // stdout: every line one JSON-RPC message, routed to the request it answers.
        let (kill_tx, kill_rx) = oneshot::channel();
        let reader = Reader {
            pending: pending.clone(),
            unsolicited,
            bounds,
            name: name.to_owned(),
        };
        let (a, s) = (alive.clone(), stopped.clone());
        let waiting = pending.clone();
        tokio::spawn(async move {
            let status = supervise(child, stdout, reader, kill_rx).await;
            a.store(false, Ordering::SeqCst);
            on_exit(Exit {
                status,
                stopped: s.load(Ordering::SeqCst),
            });
            // Only now does every request still waiting get its error (exactly one): a caller
            // that tries again finds this child dead and its exit recorded (restart delay
            // included), never a link that takes messages nobody will answer.
            lock(&waiting).clear();
        });
        Ok(StdioLink {
            stdin: tx,
            pending,
            alive,
            stopped,
            pid,
            kill: Some(kill_tx),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the child still runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Writes one message.
    pub async fn send(&self, line: Bytes) -> Result<(), HubError> {
        if !self.is_alive() {
            return Err(HubError::Upstream("stdio child exited".into()));
        }
        self.stdin
            .send(line)
            .await
            .map_err(|_| HubError::Upstream("stdio child exited".into()))
    }

    /// Writes a request and returns the stream of messages routed to it.
    pub async fn request(&self, line: Bytes, id: i64) -> Result<Answer, HubError> {
        let (tx, rx) = mpsc::channel(16);
        lock(&self.pending).insert(id, tx);
        if let Err(e) = self.send(line).await {
            lock(&self.pending).remove(&id);
            return Err(e);
        }
        Ok(Answer::Stream(rx))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Reader {
    pending: Pending,
    unsolicited: Unsolicited,
    bounds: Bounds,
    name: String,
}

impl Reader {
    async fn line(&self, line: Vec<u8>) {
        let env = match Envelope::parse(Bytes::from(line), self.bounds.max_depth) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(target: "palisade::stdio", upstream = %self.name, error = %e, "dropped an invalid line from the child");
                return;
            }
        };
        let target = match (env.kind(), env.method()) {
            (Kind::Response, _) => match env.id() {
                Some(Id::Num(n)) => lock(&self.pending).remove(n),
                _ => None,
            },
            (Kind::Notification, Some("notifications/progress")) => {
                // The hub sets each request's progress token to the request's own id.
                let token = env
                    .params()
                    .and_then(super::wire::progress_token_of_notification)
                    .and_then(|t| std::str::from_utf8(t).ok()?.parse::<i64>().ok());
                token.and_then(|t| lock(&self.pending).get(&t).cloned())
            }
            (_, Some(m))
                if m.ends_with("/list_changed") || m == "notifications/resources/updated" =>
            {
                None
            }
            // Requests and log messages during a call belong to it (the most recent one when
            // several are in flight); otherwise to the link as a whole.
            _ => {
                let p = lock(&self.pending);
                p.iter().max_by_key(|(k, _)| **k).map(|(_, v)| v.clone())
            }
        };
        match target {
            Some(tx) => {
                let _ = tx.send(env).await;
            }
            None if env.kind() == Kind::Response => {
                tracing::warn!(target: "palisade::stdio", upstream = %self.name, "dropped a response to no pending request");
            }
            None => {
                let _ = self.unsolicited.send(env).await;
            }
        }
    }
}

async fn supervise(
    mut child: Child,
    stdout: tokio::process::ChildStdout,
    reader: Reader,
    mut kill: oneshot::Receiver<()>,
) -> String {
    let max = reader.bounds.max_bytes;
    let mut out = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = tokio::select! {
            r = read_line(&mut out, &mut buf, max) => r,
            _ = &mut kill => break,
        };
        match read {
            Ok(true) => {
                if !buf.iter().all(u8::is_ascii_whitespace) {
                    reader.line(std::mem::take(&mut buf)).await;
                }
            }
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(target: "palisade::stdio", upstream = %reader.name, "{e}; stopping the child");
                break;
            }
        }
    }
    crate::sandbox::kill_group(child.id());
    let _ = child.start_kill();
    match child.wait().await {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Reads one line (without its newline) of at most `max` bytes; `Ok(false)` at end of stream.
async fn read_line(
    r: &mut BufReader<tokio::process::ChildStdout>,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(!buf.is_empty());
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&chunk[..i]);
                r.consume(i + 1);
                return Ok(true);
            }
            None => {
                let n = chunk.len();
                buf.extend_from_slice(chunk);
                r.consume(n);
            }
        }
        if buf.len() > max {
            return Err(std::io::Error::other(
                "line from the child exceeds the size limit",
            ));
        }
    }
}
