//! The segment layout (trails created since session 13): one `audit_segment` row per batch the
//! writer commits, holding the batch's records as one JSON array of their values forms
//! ([`AuditRecord::write_values`]: each record an array of its field values) and their chain
//! hashes side by side. SQL reads it per record, with named columns, through the `audit` view.
//!
//! Why not a row per record: SQLite's cost per row (a statement execution, twenty bound values,
//! a record encoding and a B-tree insert) was most of the audit trail's CPU per request, and
//! the largest part of the gateway's cost above a bare forwarder. A segment is one insert per
//! batch of the canonical bytes the writer builds anyway to hash each record.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;

use super::record::{link, AuditRecord};
use super::sqlite::Row;

/// The segment table and the per-record `audit` view over it, whose columns are those of the
/// per-row layouts (`seq`, the record's fields, `hash`), so the same SQL reads any trail.
pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS audit_segment (
    first_seq INTEGER PRIMARY KEY,
    records TEXT NOT NULL,
    hashes BLOB NOT NULL
);
CREATE VIEW IF NOT EXISTS audit AS SELECT
    s.first_seq + r.key AS seq,
    r.value ->> '$[0]' AS ts_ms,
    r.value ->> '$[1]' AS request_id,
    r.value ->> '$[2]' AS principal,
    r.value ->> '$[3]' AS auth_method,
    r.value ->> '$[4]' AS client_ip,
    r.value ->> '$[5]' AS transport,
    r.value ->> '$[6]' AS upstream,
    r.value ->> '$[7]' AS http_method,
    r.value ->> '$[8]' AS rpc_method,
    r.value ->> '$[9]' AS tool,
    r.value ->> '$[10]' AS input_hash,
    r.value ->> '$[11]' AS decision,
    r.value ->> '$[12]' AS control,
    r.value ->> '$[13]' AS reason,
    r.value ->> '$[14]' AS status,
    r.value ->> '$[15]' AS error_code,
    r.value ->> '$[16]' AS duration_us,
    r.value ->> '$[17]' AS input_bytes,
    r.value ->> '$[18]' AS output_bytes,
    substr(s.hashes, 32 * r.key + 1, 32) AS hash
FROM audit_segment s, json_each(s.records) r;";

/// Builds one segment: records are appended in chain order, each as its values form.
#[derive(Debug, Default)]
pub(super) struct Segment {
    /// `[[values],[values],…]`: a JSON array of the records' values forms.
    records: Vec<u8>,
    /// The chain hash of each record, in the same order.
    hashes: Vec<u8>,
}

impl Segment {
    /// An empty segment, keeping the buffers' capacity.
    pub(super) fn clear(&mut self) {
        self.records.clear();
        self.records.push(b'[');
        self.hashes.clear();
    }

    /// Appends `r`, chained to `prev`, and returns its hash.
    pub(super) fn push(&mut self, r: &AuditRecord, prev: &[u8; 32]) -> [u8; 32] {
        if !self.hashes.is_empty() {
            self.records.push(b',');
        }
        let start = self.records.len();
        r.write_values(&mut self.records);
        let hash = link(prev, &self.records[start..]);
        self.hashes.extend_from_slice(&hash);
        hash
    }

    /// Stores the segment as records `first_seq` onwards (nothing when it is empty).
    pub(super) fn insert(&mut self, conn: &Connection, first_seq: i64) -> rusqlite::Result<()> {
        if self.hashes.is_empty() {
            return Ok(());
        }
        self.records.push(b']');
        let mut stmt = conn.prepare_cached(
            "INSERT INTO audit_segment (first_seq, records, hashes) VALUES (?1, ?2, ?3)",
        )?;
        // Values forms are UTF-8 throughout (they are made of `str` values): bound as text
        // without checking the whole batch again.
        stmt.execute(params![
            first_seq,
            ToSqlOutput::Borrowed(ValueRef::Text(&self.records)),
            self.hashes
        ])?;
        Ok(())
    }
}

/// The last record's sequence number and hash (`None` for the hash when it is not one).
pub(super) fn head(conn: &Connection) -> rusqlite::Result<Option<(i64, Option<[u8; 32]>)>> {
    conn.query_row(
        "SELECT first_seq, hashes FROM audit_segment ORDER BY first_seq DESC LIMIT 1",
        [],
        |r| {
            let first: i64 = r.get(0)?;
            let hashes = r.get_ref(1)?.as_bytes().unwrap_or_default();
            let n = hashes.len() / 32;
            let last = (n > 0 && hashes.len() % 32 == 0)
                .then(|| hashes[32 * (n - 1)..].try_into().ok())
                .flatten();
            Ok((first + n as i64 - 1, last))
        },
    )
    .optional()
}

/// Calls `f` with each stored record in order until it returns false. A segment whose records
/// are not a JSON array gives one row without content (its first record is reported edited); a
/// record without its hash, or a hash without its record, is reported the same way.
pub(super) fn for_each(conn: &Connection, mut f: impl FnMut(Row) -> bool) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare("SELECT first_seq, records, hashes FROM audit_segment ORDER BY first_seq")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let first: i64 = row.get(0)?;
        let records = row.get_ref(1)?.as_bytes().unwrap_or_default();
        let hashes = row.get_ref(2)?.as_bytes().unwrap_or_default();
        let Ok(list) = serde_json::from_slice::<Vec<&RawValue>>(records) else {
            f(Row::unreadable(first));
            return Ok(());
        };
        for (i, raw) in list.iter().enumerate() {
            let bytes = raw.get().as_bytes();
            // The chain covers the stored bytes as they are; reading them as a record only
            // names it in a report.
            let request_id = serde_json::from_slice::<AuditRecord>(bytes)
                .map(|r| r.request_id.to_string())
                .unwrap_or_default();
            let hash = hashes
                .get(32 * i..32 * (i + 1))
                .and_then(|h| h.try_into().ok());
            let go_on = f(Row {
                seq: first + i as i64,
                request_id,
                canonical: Some(bytes.to_vec()),
                prev_hash: None,
                hash,
            });
            if !go_on {
                return Ok(());
            }
        }
        if hashes.len() != 32 * list.len() {
            f(Row::unreadable(first + list.len() as i64));
            return Ok(());
        }
    }
    Ok(())
}
