//! The audit database: which layout a trail has, reading it record by record, and the signed
//! checkpoints. The layouts themselves are in [`super::segments`] (new trails) and
//! [`super::rows`] (trails written before session 13, continued in their own layout).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{self, RowHashes};
use super::segments;

/// The checkpoint table, in every layout.
const CHECKPOINT_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY,
    record_count INTEGER NOT NULL, head_hash TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    public_key TEXT NOT NULL, signature TEXT NOT NULL
);";

/// How an audit database stores its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A row per record in the `audit` table (trails written before session 13).
    Rows(RowHashes),
    /// A row per written batch in `audit_segment`, read per record through the `audit` view.
    Segments,
}

/// Opens (creating if needed) the audit database, and says which layout it has.
///
/// Durability: WAL with `synchronous=NORMAL`. A commit is written to the WAL but not fsynced (the
/// WAL is synced when it is checkpointed into the database, about every 4–8 MB), so a power
/// loss or OS crash can lose the transactions since the last checkpoint; a process crash loses
/// nothing committed. The writer commits a batch at most `BATCH_WINDOW` (10 ms) after its first
/// record arrived. Readers (`palisade audit verify`, SQL through the `audit` view) can open the
/// file while the gateway runs.
///
/// A database whose `audit` is a table (written by an earlier version) is continued in its own
/// layout; a new one is created in segments.
pub fn open_db(path: &Path) -> rusqlite::Result<(Connection, Format)> {
    let conn = Connection::open(path)?;
    // Large pages for a new database (an existing one keeps its size): a segment is tens of
    // kilobytes, and SQLite writes each page to the WAL with its own system calls.
    conn.execute_batch(
        "PRAGMA page_size=65536; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )?;
    conn.execute_batch(CHECKPOINT_SCHEMA)?;
    let format = match format(&conn)? {
        Some(f) => f,
        None => {
            conn.execute_batch(segments::SCHEMA)?;
            Format::Segments
        }
    };
    if format == Format::Segments {
        // 128 of its 64 KB pages: an 8 MB WAL, about what SQLite's default of 1000 pages gives
        // the 4 KB pages of older trails.
        conn.execute_batch("PRAGMA wal_autocheckpoint=128;")?;
    }
    Ok((conn, format))
}

/// The layout of the trail in `conn`; `None` when it holds none yet. The segment table decides,
/// not the `audit` view over it (a dropped view hides no records from verification).
pub(super) fn format(conn: &Connection) -> rusqlite::Result<Option<Format>> {
    let kind = |name: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row(
            "SELECT type FROM sqlite_master WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
    };
    if kind("audit_segment")?.is_some() {
        return Ok(Some(Format::Segments));
    }
    if kind("audit")?.as_deref() != Some("table") {
        return Ok(None);
    }
    let prev: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'prev_hash'",
        [],
        |r| r.get(0),
    )?;
    Ok(Some(Format::Rows(if prev > 0 {
        RowHashes::HexWithPrev
    } else {
        RowHashes::Blob
    })))
}

/// One stored record, as verification needs it.
pub(super) struct Row {
    pub seq: i64,
    /// Its request id (empty when unreadable), to name it in a report.
    pub request_id: String,
    /// The bytes its chain hash covers, which serde reads as the record: the stored values form
    /// (segments), or the canonical form of the stored columns (rows). `None` when what is stored
    /// cannot be a record (an edit).
    pub canonical: Option<Vec<u8>>,
    /// The previous row's hash as this row stored it ([`RowHashes::HexWithPrev`] only).
    pub prev_hash: Option<String>,
    /// The stored chain hash, `None` when what is stored is not a hash.
    pub hash: Option<[u8; 32]>,
}

impl Row {
    /// A place where a record should be but none can be read.
    pub(super) fn unreadable(seq: i64) -> Row {
        Row {
            seq,
            request_id: String::new(),
            canonical: None,
            prev_hash: None,
            hash: None,
        }
    }
}

/// Calls `f` with each stored record in order until it returns false (a database without a
/// trail has none).
pub(super) fn for_each_row(conn: &Connection, f: impl FnMut(Row) -> bool) -> rusqlite::Result<()> {
    match format(conn)? {
        Some(Format::Rows(layout)) => rows::for_each(conn, layout, f),
        Some(Format::Segments) => segments::for_each(conn, f),
        None => Ok(()),
    }
}

/// The last record's sequence number and hash (`None` for the hash when it is not one).
pub(super) fn head(
    conn: &Connection,
    format: Format,
) -> rusqlite::Result<Option<(i64, Option<[u8; 32]>)>> {
    match format {
        Format::Rows(_) => rows::head(conn),
        Format::Segments => segments::head(conn),
    }
}

/// A signed checkpoint row.
pub(super) struct Checkpoint {
    pub record_count: i64,
    pub head_hash: String,
    pub ts_ms: i64,
    pub public_key: String,
    pub signature: String,
}

pub(super) fn insert_checkpoint(conn: &Connection, c: &Checkpoint) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO checkpoint (record_count, head_hash, ts_ms, public_key, signature) VALUES (?1,?2,?3,?4,?5)",
        params![c.record_count, c.head_hash, c.ts_ms, c.public_key, c.signature],
    )?;
    Ok(())
}

pub(super) fn last_checkpoint(conn: &Connection) -> rusqlite::Result<Option<Checkpoint>> {
    conn.query_row(
        "SELECT record_count, head_hash, ts_ms, public_key, signature FROM checkpoint ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok(Checkpoint { record_count: r.get(0)?, head_hash: r.get(1)?, ts_ms: r.get(2)?, public_key: r.get(3)?, signature: r.get(4)? }),
    )
    .optional()
}

/// The message a checkpoint signature covers.
pub(super) fn checkpoint_message(record_count: i64, head_hash: &str, ts_ms: i64) -> Vec<u8> {
    format!("palisade-audit-checkpoint\n{record_count}\n{head_hash}\n{ts_ms}").into_bytes()
}
