//! The bounded queue and the writer thread.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use tokio::sync::{mpsc, oneshot};

use super::record::{link, AuditRecord};
use super::rows;
use super::segments::Segment;
use super::sqlite::{self, Checkpoint};
use crate::config::AuditConfig;

/// How long the writer lets a batch gather after its first record before committing it. Records
/// that arrive meanwhile wake nobody and share one SQLite transaction, so the per-record cost of
/// the trail (a thread wake-up, file locks, WAL writes) is paid once per batch. It bounds how long
/// a record stays in memory only: a process crash loses what is still queued (graceful shutdown
/// flushes everything).
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Records per transaction at most.
const MAX_BATCH: usize = 4096;

// Records travel by value: the channel's slots are allocated once and reused, while a box would
// cost an allocation per request and a free on the writer thread.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(AuditRecord),
    Shutdown(oneshot::Sender<()>),
}

/// The writer could not accept a record within the configured wait: the request is refused
/// (fail closed: no unaudited traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("audit queue full")]
pub struct AuditUnavailable;

/// The request side of the audit trail; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Msg>,
    wait: Duration,
}

/// A reserved place in the queue: writing the record can no longer block or fail for lack of room.
#[derive(Debug)]
pub struct AuditSlot(mpsc::OwnedPermit<Msg>);

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl AuditSlot {
    /// Hands the record to the writer.
    pub fn write(self, record: AuditRecord) {
        self.0.send(Msg::Record(record));
    }
}

impl AuditHandle {
    /// Waits (bounded) for room in the queue.
    pub async fn reserve(&self) -> Result<AuditSlot, AuditUnavailable> {
        match self.tx.clone().try_reserve_owned() {
            Ok(p) => Ok(AuditSlot(p)),
            Err(mpsc::error::TrySendError::Full(tx)) => {
                match tokio::time::timeout(self.wait, tx.reserve_owned()).await {
                    Ok(Ok(p)) => Ok(AuditSlot(p)),
                    _ => Err(AuditUnavailable),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditUnavailable),
        }
    }

    /// Writes an event record in the background (its producer must not wait for the queue);
    /// when the queue stays full it is lost, and that is logged.
    pub fn write_later(&self, record: AuditRecord) {
        let audit = self.clone();
        tokio::spawn(async move {
            match audit.reserve().await {
                Ok(slot) => slot.write(record),
                Err(_) => {
                    tracing::error!(target: "palisade::audit", control = %record.control, reason = %record.reason, "audit queue full: event lost")
                }
            }
        });
    }

    /// A handle whose records are counted and dropped (unit tests of controls that audit).
    #[cfg(test)]
    pub(crate) fn for_tests() -> (AuditHandle, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let (tx, mut rx) = mpsc::channel(64);
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = n.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if matches!(m, Msg::Record(_)) {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        (
            AuditHandle {
                tx,
                wait: Duration::from_secs(1),
            },
            n,
        )
    }

    /// Records waiting to be written.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The writer thread; [`AuditWriter::shutdown`] flushes and writes a final checkpoint.
#[derive(Debug)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

/// Loads the gateway's Ed25519 checkpoint key from `dir`, creating it (mode 0600) on first start.
/// The public half is written beside it for `palisade audit verify`.
pub fn load_or_create_key(dir: &Path) -> std::io::Result<SigningKey> {
    let path = dir.join("audit-signing.key");
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a key", path.display()),
                    )
                })?;
            SigningKey::from_bytes(&bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            write_private(&path, &hex::encode(key.to_bytes()))?;
            key
        }
        Err(e) => return Err(e),
    };
    std::fs::write(
        dir.join("audit-signing.pub"),
        hex::encode(key.verifying_key().to_bytes()),
    )?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(text.as_bytes())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Chain {
    conn: rusqlite::Connection,
    format: sqlite::Format,
    key: SigningKey,
    seq: i64,
    head: [u8; 32],
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Reused for each record's canonical bytes (per-row layouts).
    canonical: Vec<u8>,
    /// Reused for each batch (segment layout).
    segment: Segment,
}

impl Chain {
    /// Chains and stores `batch` in one transaction. The in-memory head moves only when the
    /// transaction commits, so a failed write never leaves the chain ahead of the database.
    fn append<'r>(&mut self, batch: impl Iterator<Item = &'r AuditRecord>) -> rusqlite::Result<()> {
        let (mut seq, mut head) = (self.seq, self.head);
        let tx = self.conn.transaction()?;
        match self.format {
            sqlite::Format::Segments => {
                let segment = &mut self.segment;
                segment.clear();
                for r in batch {
                    head = segment.push(r, &head);
                    seq += 1;
                }
                segment.insert(&tx, self.seq + 1)?;
            }
            sqlite::Format::Rows(layout) => {
                let mut stmt = tx.prepare_cached(rows::insert_sql(layout))?;
                // A statement taken from the cache starts with no bindings.
                let mut last = None;
                for r in batch {
                    self.canonical.clear();
                    r.write_canonical(&mut self.canonical);
                    let prev = head;
                    head = link(&head, &self.canonical);
                    seq += 1;
                    rows::insert(&mut stmt, layout, seq, r, last, &prev, &head)?;
                    last = Some(r);
                }
            }
        }
        tx.commit()?;
        self.since_checkpoint += (seq - self.seq) as u64;
        (self.seq, self.head) = (seq, head);
        Ok(())
    }

    fn checkpoint(&mut self) -> rusqlite::Result<()> {
        let head_hash = hex::encode(self.head);
        let ts_ms = now_ms();
        let sig = self
            .key
            .sign(&sqlite::checkpoint_message(self.seq, &head_hash, ts_ms));
        let c = Checkpoint {
            record_count: self.seq,
            head_hash,
            ts_ms,
            public_key: hex::encode(self.key.verifying_key().to_bytes()),
            signature: hex::encode(sig.to_bytes()),
        };
        sqlite::insert_checkpoint(&self.conn, &c)?;
        // Also anchored in the logs, which usually leave the machine.
        tracing::info!(target: "palisade::audit", records = c.record_count, head = %c.head_hash, "audit checkpoint");
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        Ok(())
    }
}

impl AuditWriter {
    /// Opens the database, resumes the chain and starts the writer thread.
    pub fn start(
        cfg: &AuditConfig,
        key: SigningKey,
        queue_wait: Duration,
        rt: tokio::runtime::Handle,
    ) -> Result<(AuditHandle, AuditWriter), String> {
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("audit directory {}: {e}", dir.display()))?;
        }
        let (conn, format) = sqlite::open_db(&cfg.path)
            .map_err(|e| format!("audit database {}: {e}", cfg.path.display()))?;
        let (seq, head) = match sqlite::head(&conn, format).map_err(|e| e.to_string())? {
            Some((seq, hash)) => (seq, hash.ok_or("audit head hash is corrupt")?),
            None => (0, [0u8; 32]),
        };
        let mut chain = Chain {
            conn,
            format,
            key,
            seq,
            head,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            canonical: Vec::with_capacity(1024),
            segment: Segment::default(),
        };
        chain
            .checkpoint()
            .map_err(|e| format!("audit checkpoint: {e}"))?;
        let (tx, mut rx) = mpsc::channel::<Msg>(cfg.queue);
        let every = cfg.checkpoint_every;
        let interval = cfg.checkpoint_interval;
        let thread = std::thread::Builder::new()
            .name("palisade-audit".into())
            .spawn(move || {
                let mut msgs = Vec::with_capacity(MAX_BATCH);
                loop {
                    msgs.clear();
                    let got = rt.block_on(async { tokio::time::timeout(interval, rx.recv_many(&mut msgs, MAX_BATCH)).await });
                    let closed = matches!(got, Ok(0));
                    if !closed && !msgs.is_empty() && msgs.len() < MAX_BATCH {
                        // Let the batch fill: records arriving meanwhile wake nobody, and one
                        // transaction then carries them all.
                        std::thread::sleep(BATCH_WINDOW);
                        while msgs.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(m) => msgs.push(m),
                                Err(_) => break,
                            }
                        }
                    }
                    // Records are chained where they lie in `msgs`: a record is about a kilobyte,
                    // and moving each into a second vector is a copy per request.
                    let done = msgs
                        .iter()
                        .position(|m| matches!(m, Msg::Shutdown(_)))
                        .and_then(|i| match msgs.remove(i) {
                            Msg::Shutdown(ack) => Some(ack),
                            Msg::Record(_) => None,
                        });
                    let records = msgs.iter().filter_map(|m| match m {
                        Msg::Record(r) => Some(r),
                        Msg::Shutdown(_) => None,
                    });
                    if !msgs.is_empty() {
                        if let Err(e) = chain.append(records) {
                            tracing::error!(target: "palisade::audit", error = %e, lost = msgs.len(), "audit write failed");
                        }
                    }
                    let due = chain.since_checkpoint >= every || (chain.since_checkpoint > 0 && chain.last_checkpoint.elapsed() >= interval);
                    if due || done.is_some() || closed {
                        if let Err(e) = chain.checkpoint() {
                            tracing::error!(target: "palisade::audit", error = %e, "audit checkpoint failed");
                        }
                    }
                    if let Some(ack) = done {
                        let _ = ack.send(());
                        return;
                    }
                    if closed {
                        return;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok((
            AuditHandle {
                tx: tx.clone(),
                wait: queue_wait,
            },
            AuditWriter {
                tx,
                thread: Some(thread),
            },
        ))
    }

    /// Writes everything queued, a final checkpoint, and stops the thread.
    pub async fn shutdown(mut self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
