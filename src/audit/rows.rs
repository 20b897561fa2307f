//! The per-row layouts of trails written before session 13: one `audit` table row per record,
//! its fields as columns. Such a trail is continued, read and verified in its own layout.

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::record::{hex_lower, AuditRecord, Decision, Text};
use super::sqlite::Row;

/// How a per-row trail stores its chain hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowHashes {
    /// Written before session 10: both hashes as hex text, each row also holding the previous
    /// row's hash (`prev_hash`).
    HexWithPrev,
    /// Written in sessions 10 to 12: the chain hash alone, as a 32-byte blob.
    Blob,
}

/// The statement that appends one chained record.
pub(super) fn insert_sql(layout: RowHashes) -> &'static str {
    match layout {
        RowHashes::Blob => "INSERT INTO audit (seq, ts_ms, request_id, principal, auth_method, client_ip, transport, upstream, http_method,
    rpc_method, tool, input_hash, decision, control, reason, status, error_code, duration_us, input_bytes,
    output_bytes, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)",
        RowHashes::HexWithPrev => "INSERT INTO audit (seq, ts_ms, request_id, principal, auth_method, client_ip, transport, upstream, http_method,
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
    layout: RowHashes,
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
    match layout {
        RowHashes::Blob => stmt.raw_bind_parameter(i, &hash[..])?,
        RowHashes::HexWithPrev => {
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

/// The last record's sequence number and hash (`None` for the hash when it is not one).
pub(super) fn head(conn: &Connection) -> rusqlite::Result<Option<(i64, Option<[u8; 32]>)>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, stored_hash(r.get_ref(1)?))),
    )
    .optional()
}

/// Calls `f` with each stored record in order until it returns false.
pub(super) fn for_each(
    conn: &Connection,
    layout: RowHashes,
    mut f: impl FnMut(Row) -> bool,
) -> rusqlite::Result<()> {
    let prev = match layout {
        RowHashes::HexWithPrev => "prev_hash",
        RowHashes::Blob => "NULL",
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
        // A decision that is neither value cannot be a record: an edit.
        let canonical = (decision == "allow" || decision == "deny").then(|| record.canonical());
        if !f(Row {
            seq: row.get(0)?,
            request_id: record.request_id.to_string(),
            canonical,
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
