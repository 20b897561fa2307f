use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::AuditConfig;

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        ts_ms: 1_700_000_000_000 + i as i64,
        request_id: format!("req-{i}").into(),
        principal: "anonymous".into(),
        auth_method: "none".into(),
        client_ip: "127.0.0.1".into(),
        transport: "http".into(),
        upstream: Some("demo".into()),
        http_method: "POST".into(),
        rpc_method: Some("tools/call".into()),
        tool: Some("echo".into()),
        input_hash: Some("ab".repeat(32).into()),
        decision: Decision::Allow,
        control: "upstream".into(),
        reason: "ok".into(),
        status: 200,
        error_code: None,
        duration_us: 10,
        input_bytes: 20,
        output_bytes: 30,
    }
}

/// A scratch directory, removed when the test ends.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("palisade-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

async fn write_trail(dir: &Path, n: usize, checkpoint_every: u64) -> PathBuf {
    let cfg = AuditConfig {
        path: dir.join("audit.db"),
        queue: 64,
        checkpoint_every,
        checkpoint_interval: Duration::from_secs(3600),
    };
    let key = load_or_create_key(dir).unwrap();
    let (handle, writer) = AuditWriter::start(
        &cfg,
        key,
        Duration::from_secs(5),
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    for i in 0..n {
        handle.reserve().await.unwrap().write(record(i));
    }
    writer.shutdown().await;
    cfg.path
}

fn exec(db: &Path, sql: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn intact_trail_verifies_and_resumes_across_restarts() {
    let dir = tmpdir("intact");
    let db = write_trail(&dir, 100, 7).await;
    let pubkey = dir.join("audit-signing.pub");
    assert_eq!(
        verify(&db, &pubkey).unwrap(),
        VerifyReport {
            records: 100,
            checkpointed: 100
        }
    );
    // A second run appends to the same chain with the same key.
    write_trail(&dir, 5, 1000).await;
    assert_eq!(verify(&db, &pubkey).unwrap().records, 105);
}

/// Changes, in the segment that holds record `seq`, what `set` says; `$I` in it stands for the
/// record's index in its segment.
fn edit_segment(db: &Path, seq: i64, set: &str) {
    let sql = format!(
        "UPDATE audit_segment SET {} WHERE first_seq <= {seq} AND first_seq + json_array_length(records) > {seq}",
        set.replace("$I", &format!("({seq} - first_seq)"))
    );
    let changed = rusqlite::Connection::open(db)
        .unwrap()
        .execute(&sql, [])
        .unwrap();
    assert_eq!(changed, 1, "{sql}");
}

#[tokio::test(flavor = "multi_thread")]
async fn edited_record_is_named() {
    let dir = tmpdir("edited");
    let db = write_trail(&dir, 20, 1000).await;
    // The decision is the twelfth value of a record.
    edit_segment(
        &db,
        8,
        "records = json_set(records, '$[' || $I || '][11]', 'deny')",
    );
    let err = verify(&db, &dir.join("audit-signing.pub")).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Modified {
            seq: 8,
            request_id: "req-7".into()
        }
    );
    assert!(err.to_string().contains("record 8"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_records_are_named() {
    let dir = tmpdir("deleted");
    // Three runs: each starts a segment of its own (records 1, 21 and 31 begin one).
    write_trail(&dir, 20, 1000).await;
    write_trail(&dir, 10, 1000).await;
    let db = write_trail(&dir, 10, 1000).await;
    let pubkey = dir.join("audit-signing.pub");
    let pristine = std::fs::read(&db).unwrap();

    // A record taken out of the middle of a segment, with its hash: the next one does not
    // follow the record now before it.
    edit_segment(
        &db,
        11,
        "records = json_remove(records, '$[' || $I || ']'),
         hashes = CAST(substr(hashes, 1, 32 * $I) || substr(hashes, 32 * $I + 33) AS BLOB)",
    );
    let err = verify(&db, &pubkey).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Modified { seq: 11, request_id } if request_id == "req-11"),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("or a record before it was removed"));

    // The last record of a segment taken out, its hash left: the hash has no record.
    std::fs::write(&db, &pristine).unwrap();
    edit_segment(&db, 30, "records = json_remove(records, '$[#-1]')");
    assert!(matches!(
        verify(&db, &pubkey).unwrap_err(),
        VerifyError::Modified { seq: 30, .. }
    ));

    // A whole segment deleted leaves a gap in the numbers ...
    std::fs::write(&db, &pristine).unwrap();
    exec(&db, "DELETE FROM audit_segment WHERE first_seq = 21");
    let err = verify(&db, &pubkey).unwrap_err();
    assert!(matches!(err, VerifyError::Broken { seq: 21, .. }), "{err}");
    // ... and renumbering to hide it does not help: the next record was chained to the deleted one.
    exec(
        &db,
        "UPDATE audit_segment SET first_seq = 21 WHERE first_seq = 31",
    );
    let err = verify(&db, &pubkey).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Modified { seq: 21, request_id } if request_id == "req-0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_trail_is_stored_in_segments_and_read_per_record_through_the_view() {
    let dir = tmpdir("layout");
    let db = write_trail(&dir, 3, 1000).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let kind: String = conn
        .query_row(
            "SELECT type FROM sqlite_master WHERE name = 'audit'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "view");
    // The view has the per-row layout's columns and values.
    let mut stmt = conn
        .prepare(
            "SELECT seq, ts_ms, request_id, principal, auth_method, client_ip, transport, upstream,
             http_method, rpc_method, tool, input_hash, decision, control, reason, status,
             error_code, duration_us, input_bytes, output_bytes, typeof(hash), length(hash)
             FROM audit ORDER BY seq",
        )
        .unwrap();
    let rows: Vec<(i64, AuditRecord, String, i64)> = stmt
        .query_map([], |r| {
            let text = |i| r.get::<_, String>(i).map(Text::from);
            let opt = |i| r.get::<_, Option<String>>(i).map(|t| t.map(Text::from));
            Ok((
                r.get(0)?,
                AuditRecord {
                    ts_ms: r.get(1)?,
                    request_id: text(2)?,
                    principal: text(3)?,
                    auth_method: text(4)?,
                    client_ip: text(5)?,
                    transport: text(6)?,
                    upstream: opt(7)?,
                    http_method: text(8)?,
                    rpc_method: opt(9)?,
                    tool: opt(10)?,
                    input_hash: opt(11)?,
                    decision: if r.get::<_, String>(12)? == "allow" {
                        Decision::Allow
                    } else {
                        Decision::Deny
                    },
                    control: text(13)?,
                    reason: text(14)?,
                    status: r.get(15)?,
                    error_code: opt(16)?,
                    duration_us: r.get(17)?,
                    input_bytes: r.get(18)?,
                    output_bytes: r.get(19)?,
                },
                r.get(20)?,
                r.get(21)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<_> = (0..3)
        .map(|i| (i as i64 + 1, record(i), "blob".to_owned(), 32))
        .collect();
    assert_eq!(rows, expected);
    drop(stmt);
    drop(conn);
    // A hash replaced by anything else is an edit, not an error reading the trail.
    edit_segment(
        &db,
        2,
        "hashes = CAST(substr(hashes, 1, 32 * $I) || zeroblob(32) || substr(hashes, 32 * $I + 33) AS BLOB)",
    );
    assert!(matches!(
        verify(&db, &dir.join("audit-signing.pub")).unwrap_err(),
        VerifyError::Modified { seq: 2, .. }
    ));
    // Records that are not a JSON array are an edit of the segment's first record.
    exec(&db, "UPDATE audit_segment SET records = 'not json'");
    assert!(matches!(
        verify(&db, &dir.join("audit-signing.pub")).unwrap_err(),
        VerifyError::Modified { seq: 1, .. }
    ));
}

/// The layout of trails written before session 10: both hashes as hex, and the previous one in
/// each row.
const LEGACY_SCHEMA: &str = "CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL, request_id TEXT NOT NULL, principal TEXT NOT NULL, auth_method TEXT NOT NULL,
    client_ip TEXT NOT NULL, transport TEXT NOT NULL, upstream TEXT, http_method TEXT NOT NULL,
    rpc_method TEXT, tool TEXT, input_hash TEXT, decision TEXT NOT NULL, control TEXT NOT NULL,
    reason TEXT NOT NULL, status INTEGER NOT NULL, error_code TEXT, duration_us INTEGER NOT NULL,
    input_bytes INTEGER NOT NULL, output_bytes INTEGER NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit(ts_ms);";

#[tokio::test(flavor = "multi_thread")]
async fn an_older_trail_is_continued_in_its_own_layout() {
    let dir = tmpdir("legacy");
    exec(&dir.join("audit.db"), LEGACY_SCHEMA);
    let db = write_trail(&dir, 10, 1000).await;
    write_trail(&dir, 5, 1000).await;
    let pubkey = dir.join("audit-signing.pub");
    assert_eq!(verify(&db, &pubkey).unwrap().records, 15);
    // Hex hashes, each row holding its predecessor's.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (prev, before): (String, String) = conn
        .query_row(
            "SELECT a.prev_hash, b.hash FROM audit a JOIN audit b ON b.seq = a.seq - 1 WHERE a.seq = 12",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(prev, before);
    assert_eq!(prev.len(), 64);
    drop(conn);
    // A deletion hidden by renumbering is named by the stored link.
    exec(
        &db,
        "DELETE FROM audit WHERE seq = 6; UPDATE audit SET seq = seq - 1 WHERE seq > 6",
    );
    let err = verify(&db, &pubkey).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Broken { seq: 6, why, .. } if why.contains("prev_hash")),
        "{err}"
    );
}

/// The layout of trails written in sessions 10 to 12: a row per record, the chain hash as 32
/// bytes.
const BLOB_ROWS_SCHEMA: &str = "CREATE TABLE audit (seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL, request_id TEXT NOT NULL, principal TEXT NOT NULL, auth_method TEXT NOT NULL,
    client_ip TEXT NOT NULL, transport TEXT NOT NULL, upstream TEXT, http_method TEXT NOT NULL,
    rpc_method TEXT, tool TEXT, input_hash TEXT, decision TEXT NOT NULL, control TEXT NOT NULL,
    reason TEXT NOT NULL, status INTEGER NOT NULL, error_code TEXT, duration_us INTEGER NOT NULL,
    input_bytes INTEGER NOT NULL, output_bytes INTEGER NOT NULL, hash BLOB NOT NULL
);";

#[tokio::test(flavor = "multi_thread")]
async fn a_per_row_trail_of_sessions_10_to_12_is_continued_in_its_own_layout() {
    let dir = tmpdir("blob-rows");
    exec(&dir.join("audit.db"), BLOB_ROWS_SCHEMA);
    let db = write_trail(&dir, 10, 1000).await;
    write_trail(&dir, 5, 1000).await;
    let pubkey = dir.join("audit-signing.pub");
    assert_eq!(verify(&db, &pubkey).unwrap().records, 15);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows, segments): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM audit WHERE length(hash) = 32),
                    (SELECT count(*) FROM sqlite_master WHERE name = 'audit_segment')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, segments), (15, 0));
    drop(conn);
    exec(&db, "UPDATE audit SET decision = 'deny' WHERE seq = 12");
    assert!(matches!(
        verify(&db, &pubkey).unwrap_err(),
        VerifyError::Modified { seq: 12, .. }
    ));
}

/// Every stored record must read back as exactly the record written, whichever fields change
/// from one record to the next (values, `NULL` and back, decisions, numbers). In the per-row
/// layout the writer binds only the fields that differ from the record the statement inserted
/// just before, which this catches when it goes wrong.
async fn neighbours_read_back(name: &str, schema: Option<&str>) {
    let dir = tmpdir(name);
    if let Some(schema) = schema {
        exec(&dir.join("audit.db"), schema);
    }
    let records: Vec<AuditRecord> = (0..60)
        .map(|i| AuditRecord {
            principal: if i % 4 < 2 { "alice" } else { "bob" }.into(),
            upstream: (i % 3 != 0).then(|| "demo".into()),
            tool: (i % 5 != 4).then(|| "echo".into()),
            input_hash: (i % 7 != 0).then(|| "cd".repeat(32).into()),
            decision: if i % 6 == 5 {
                Decision::Deny
            } else {
                Decision::Allow
            },
            status: if i % 6 == 5 { 403 } else { 200 },
            error_code: (i % 6 == 5).then(|| "FORBIDDEN".into()),
            duration_us: (i / 2) as i64,
            reason: if i % 8 == 3 { "quote \" \\ \n" } else { "ok" }.into(),
            ..record(i)
        })
        .collect();
    let cfg = AuditConfig {
        path: dir.join("audit.db"),
        queue: 64,
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(3600),
    };
    let (handle, writer) = AuditWriter::start(
        &cfg,
        load_or_create_key(&dir).unwrap(),
        Duration::from_secs(5),
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    for r in &records {
        handle.reserve().await.unwrap().write(r.clone());
    }
    writer.shutdown().await;
    assert_eq!(
        verify(&cfg.path, &dir.join("audit-signing.pub"))
            .unwrap()
            .records,
        60
    );
    let conn = rusqlite::Connection::open(&cfg.path).unwrap();
    let mut stored = Vec::new();
    super::sqlite::for_each_row(&conn, |row| {
        stored.push(serde_json::from_slice::<AuditRecord>(&row.canonical.unwrap()).unwrap());
        true
    })
    .unwrap();
    assert_eq!(stored, records);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_record_reads_back_as_written_in_segments() {
    neighbours_read_back("neighbours-segments", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_row_holds_its_own_record_when_neighbours_share_fields() {
    neighbours_read_back("neighbours-rows", Some(BLOB_ROWS_SCHEMA)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_tail_is_caught_by_the_checkpoint() {
    let dir = tmpdir("tail");
    write_trail(&dir, 15, 1000).await;
    // A second run: its records begin a segment of their own.
    let db = write_trail(&dir, 5, 1000).await;
    exec(&db, "DELETE FROM audit_segment WHERE first_seq > 15");
    let err = verify(&db, &dir.join("audit-signing.pub")).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Truncated {
            expected: 20,
            found: 15
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replaced_chain_or_forged_checkpoint_is_caught() {
    let dir = tmpdir("replaced");
    let db = write_trail(&dir, 10, 1000).await;
    // An attacker rebuilds a whole consistent chain with another key and its own checkpoint.
    let other = tmpdir("replaced-other");
    let forged = write_trail(&other, 10, 1000).await;
    std::fs::copy(&forged, &db).unwrap();
    let err = verify(&db, &dir.join("audit-signing.pub")).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);
    // Deleting the checkpoints does not help either.
    exec(&db, "DELETE FROM checkpoint");
    assert_eq!(
        verify(&db, &dir.join("audit-signing.pub")).unwrap_err(),
        VerifyError::NoCheckpoint
    );
}

mod canonical {
    use proptest::prelude::*;

    use super::super::{AuditRecord, Decision, Text};

    fn text() -> impl Strategy<Value = Text> {
        // Any Unicode, with control characters, quotes and backslashes made likely.
        prop_oneof![
            any::<String>(),
            "[\\x00-\\x1f\"\\\\a\\u{7f}\\u{e9}\\u{2028}\\u{1F600}]{0,12}",
        ]
        .prop_map(Text::from)
    }

    prop_compose! {
        fn record()(
            ints in any::<(i64, i64, i64, i64)>(),
            status in any::<u16>(),
            allow in any::<bool>(),
            request_id in text(),
            a in (text(), text(), text(), text(), text()),
            b in (proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(text())),
            c in (proptest::option::of(text()), text(), text(), proptest::option::of(text())),
        ) -> AuditRecord {
            AuditRecord {
                ts_ms: ints.0,
                request_id,
                principal: a.0,
                auth_method: a.1,
                client_ip: a.2,
                transport: a.3,
                upstream: b.0,
                http_method: a.4,
                rpc_method: b.1,
                tool: b.2,
                input_hash: c.0,
                decision: if allow { Decision::Allow } else { Decision::Deny },
                control: c.1,
                reason: c.2,
                status,
                error_code: c.3,
                duration_us: ints.1,
                input_bytes: ints.2,
                output_bytes: ints.3,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The chain of every existing trail was computed over serde_json's bytes.
        #[test]
        fn canonical_is_serde_json(r in record()) {
            prop_assert_eq!(r.canonical(), serde_json::to_vec(&r).unwrap());
        }

        /// The segment layout stores the values form: serde reads it back as the same record,
        /// and it is the canonical form without the field names.
        #[test]
        fn values_form_reads_back_as_the_record(r in record()) {
            let mut values = Vec::new();
            r.write_values(&mut values);
            prop_assert_eq!(serde_json::from_slice::<AuditRecord>(&values).unwrap(), r.clone());
            let keyed: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&r.canonical()).unwrap();
            let positional: Vec<serde_json::Value> = serde_json::from_slice(&values).unwrap();
            let names = ["ts_ms", "request_id", "principal", "auth_method", "client_ip",
                "transport", "upstream", "http_method", "rpc_method", "tool", "input_hash",
                "decision", "control", "reason", "status", "error_code", "duration_us",
                "input_bytes", "output_bytes"];
            prop_assert_eq!(positional.len(), names.len());
            for (name, v) in names.iter().zip(&positional) {
                prop_assert_eq!(&keyed[*name], v);
            }
        }
    }

    #[test]
    fn canonical_extremes_match_serde_json() {
        let mut r = super::record(1);
        for (i, n) in [0, -1, 1, 9, 10, i64::MIN, i64::MAX, -1_000_000]
            .into_iter()
            .enumerate()
        {
            r.ts_ms = n;
            r.duration_us = -n.wrapping_add(i as i64);
            r.error_code = Some("MCP-001".into());
            r.tool = None;
            assert_eq!(r.canonical(), serde_json::to_vec(&r).unwrap());
        }
    }
}
