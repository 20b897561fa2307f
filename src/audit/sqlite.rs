//! SQLite storage of the chained records and signed checkpoints.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use super::record::{hex_lower, AuditRecord, Decision, Text};

/// The record's columns, in the order of [`AuditRecord`].
macro_rules! record_columns {
    () => {
        "ts_ms INTEGER NOT NULL, request_id TEXT NOT NULL, principal TEXT NOT NULL, auth_method TEXT NOT NULL,
    client_ip TEXT NOT NULL, transport TEXT NOT NULL, upstream TEXT, http_method TEXT NOT NULL,
    rpc_method TEXT, tool TEXT, input_hash TEXT, decision TEXT NOT NULL, control TEXT NOT NULL,
    reason TEXT NOT NULL, status INTEGER NOT NULL, error_code TEXT, duration_us INTEGER NOT NULL,
    input_bytes INTEGER NOT NULL, output_bytes INTEGER NOT NULL"
    };
}

/// A new database: the chain hash of each row as 32 bytes (the hash of the previous row's hash
/// and this row's canonical record).
const SCHEMA: &str = concat!(
    "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, ",
    record_columns!(),
    ", hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY,
    record_count INTEGER NOT NULL, head_hash TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    public_key TEXT NOT NULL, signature TEXT NOT NULL
);"
);

/// How an audit database stores its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Databases created before session 10: each row also stores the previous row's hash, and
    /// both hashes are hex text. Still read, verified and appended to in that layout.
    HexWithPrev,
    /// The chain hash alone, as a 32-byte blob: about 100 bytes less per row, which is a third
    /// of the writer's work per record.
    Blob,
}

/// Opens (creating if needed) the audit database, and says which layout it has.
///
/// Durability: WAL with `synchronous=NORMAL`. A commit is written to the WAL but not fsynced (the
/// WAL is synced when it is checkpointed into the database, about every 1000 pages), so a power
/// loss or OS crash can lose the transactions since the last checkpoint; a process crash loses
/// nothing committed. The writer commits a batch at most `BATCH_WINDOW` (10 ms) after its first
/// record arrived. Readers (`palisade audit verify`) can open the file while the gateway runs.
///
/// The table has no index but its primary key (`seq`, arrival order): an index on `ts_ms` cost
/// about a fifth of the writer's time per record. An operator who queries by time on a large
/// trail can add one (`CREATE INDEX audit_ts ON audit(ts_ms)`); the gateway keeps any index up
/// to date.
pub fn open_db(path: &Path) -> rusqlite::Result<(Connection, Format)> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
    conn.execute_batch(SCHEMA)?;
    let format = format(&conn)?;
    Ok((conn, format))
}

/// The layout of the `audit` table of `conn`.
pub(super) fn format(conn: &Connection) -> rusqlite::Result<Format> {
    let legacy: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'prev_hash'",
        [],
        |r| r.get(0),
    )?;
    Ok(if legacy > 0 {
        Format::HexWithPrev
    } else {
        Format::Blob
    })
}

/// The statement that appends one chained record.
pub(super) fn insert_sql(format: Format) -> &'static str {
    match format {
        Format::Blob => "INSERT INTO audit (seq, ts_ms, request_id, principal, auth_method, client_ip, transport, upstream, http_method,
    rpc_method, tool, input_hash, decision, control, reason, status, error_code, duration_us, input_bytes,
    output_bytes, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)",
        Format::HexWithPrev => "INSERT INTO audit (seq, ts_ms, request_id, principal, auth_method, client_ip, transport, upstream, http_method,
    rpc_method, tool, input_hash, decision, control, reason, status, error_code, duration_us, input_bytes,
    output_bytes, hash, prev_hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22)",
    }
}

/// Appends one chained record with the statement of [`insert_sql`].
///
/// `last` is the record this statement inserted just before (same batch), or `None` when its
/// bindings start empty. A parameter keeps its binding across executions (SQLite resets a
/// statement without clearing them), so a field equal to `last`'s is not bound again: most
/// consecutive records share principal, route, method, tool and outcome, and each text binding
/// is a copy inside SQLite (`rusqlite` binds as `SQLITE_TRANSIENT`).
pub(super) fn insert(
    stmt: &mut rusqlite::Statement<'_>,
    format: Format,
    seq: i64,
    r: &AuditRecord,
    last: Option<&AuditRecord>,
    prev: &[u8; 32],
    hash: &[u8; 32],
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(1, seq)?;
    macro_rules! field {
        ($n:expr, $f:ident) => {
            if last.is_none_or(|l| l.$f != r.$f) {
                stmt.raw_bind_parameter($n, &r.$f)?;
            }
        };
    }
    field!(2, ts_ms);
    field!(3, request_id);
    field!(4, principal);
    field!(5, auth_method);
    field!(6, client_ip);
    field!(7, transport);
    field!(8, upstream);
    field!(9, http_method);
    field!(10, rpc_method);
    field!(11, tool);
    field!(12, input_hash);
    if last.is_none_or(|l| l.decision != r.decision) {
        stmt.raw_bind_parameter(13, r.decision.as_str())?;
    }
    field!(14, control);
    field!(15, reason);
    field!(16, status);
    field!(17, error_code);
    field!(18, duration_us);
    field!(19, input_bytes);
    field!(20, output_bytes);
    let i = 21;
    match format {
        Format::Blob => stmt.raw_bind_parameter(i, &hash[..])?,
        Format::HexWithPrev => {
            stmt.raw_bind_parameter(i, hex_lower(hash))?;
            stmt.raw_bind_parameter(i + 1, hex_lower(prev))?;
        }
    }
    stmt.raw_execute()?;
    Ok(())
}

/// A stored chain hash, whichever layout stored it; `None` when it is not one (an edit).
fn stored_hash(v: ValueRef<'_>) -> Option<[u8; 32]> {
    match v {
        ValueRef::Blob(b) => b.try_into().ok(),
        ValueRef::Text(t) => hex::decode(t).ok()?.try_into().ok(),
        _ => None,
    }
}

/// One stored row: the record plus its chain fields.
pub(super) struct Row {
    pub seq: i64,
    pub record: AuditRecord,
    /// False when the stored decision is neither `allow` nor `deny` (an edit).
    pub decision_valid: bool,
    /// The previous row's hash as this row stored it ([`Format::HexWithPrev`] only).
    pub prev_hash: Option<String>,
    /// The stored chain hash, `None` when what is stored is not a hash.
    pub hash: Option<[u8; 32]>,
}

pub(super) fn for_each_row(
    conn: &Connection,
    mut f: impl FnMut(Row) -> bool,
) -> rusqlite::Result<()> {
    let prev = match format(conn)? {
        Format::HexWithPrev => "prev_hash",
        Format::Blob => "NULL",
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, ts_ms, request_id, principal, auth_method, client_ip, transport, upstream, http_method, rpc_method,
         tool, input_hash, decision, control, reason, status, error_code, duration_us, input_bytes, output_bytes,
         {prev}, hash FROM audit ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let decision: String = row.get(12)?;
        let record = AuditRecord {
            ts_ms: row.get(1)?,
            request_id: text(row, 2)?,
            principal: text(row, 3)?,
            auth_method: text(row, 4)?,
            client_ip: text(row, 5)?,
            transport: text(row, 6)?,
            upstream: opt_text(row, 7)?,
            http_method: text(row, 8)?,
            rpc_method: opt_text(row, 9)?,
            tool: opt_text(row, 10)?,
            input_hash: opt_text(row, 11)?,
            decision: if decision == "allow" {
                Decision::Allow
            } else {
                Decision::Deny
            },
            control: text(row, 13)?,
            reason: text(row, 14)?,
            status: row.get(15)?,
            error_code: opt_text(row, 16)?,
            duration_us: row.get(17)?,
            input_bytes: row.get(18)?,
            output_bytes: row.get(19)?,
        };
        let decision_valid = decision == "allow" || decision == "deny";
        if !f(Row {
            seq: row.get(0)?,
            record,
            decision_valid,
            prev_hash: row.get(20)?,
            hash: stored_hash(row.get_ref(21)?),
        }) {
            break;
        }
    }
    Ok(())
}

fn text(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Text> {
    row.get::<_, String>(i).map(Text::from)
}

fn opt_text(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Text>> {
    row.get::<_, Option<String>>(i).map(|t| t.map(Text::from))
}

/// The last record's sequence number and hash (`None` for the hash when it is not one).
pub(super) fn head(conn: &Connection) -> rusqlite::Result<Option<(i64, Option<[u8; 32]>)>> {
    conn.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, stored_hash(r.get_ref(1)?))),
    )
    .optional()
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
