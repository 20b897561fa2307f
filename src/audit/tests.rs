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

#[tokio::test(flavor = "multi_thread")]
async fn edited_record_is_named() {
    let dir = tmpdir("edited");
    let db = write_trail(&dir, 20, 1000).await;
    exec(&db, "UPDATE audit SET decision = 'deny' WHERE seq = 8");
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
async fn deleted_middle_record_is_named() {
    let dir = tmpdir("deleted");
    let db = write_trail(&dir, 20, 1000).await;
    exec(&db, "DELETE FROM audit WHERE seq = 11");
    let err = verify(&db, &dir.join("audit-signing.pub")).unwrap_err();
    assert!(matches!(err, VerifyError::Broken { seq: 11, .. }), "{err}");
    // Renumbering to hide the gap does not help: the next record was chained to the deleted one.
    exec(&db, "UPDATE audit SET seq = seq - 1 WHERE seq > 11");
    let err = verify(&db, &dir.join("audit-signing.pub")).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Modified { seq: 11, request_id } if request_id == "req-11"),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("or a record before it was removed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_trail_stores_each_chain_hash_as_32_bytes() {
    let dir = tmpdir("layout");
    let db = write_trail(&dir, 3, 1000).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (kind, len): (String, i64) = conn
        .query_row(
            "SELECT typeof(hash), length(hash) FROM audit WHERE seq = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), len), ("blob", 32));
    let legacy: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'prev_hash'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(legacy, 0);
    // A hash replaced by anything else is an edit, not an error reading the trail.
    exec(&db, "UPDATE audit SET hash = 'not a hash' WHERE seq = 2");
    assert!(matches!(
        verify(&db, &dir.join("audit-signing.pub")).unwrap_err(),
        VerifyError::Modified { seq: 2, .. }
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

/// The writer binds only the fields that differ from the record the statement inserted just
/// before; every stored row must still be exactly its own record, whichever fields change from
/// one record to the next (values, `NULL` and back, decisions, numbers).
#[tokio::test(flavor = "multi_thread")]
async fn each_row_holds_its_own_record_when_neighbours_share_fields() {
    let dir = tmpdir("neighbours");
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
        stored.push(row.record);
        true
    })
    .unwrap();
    assert_eq!(stored, records);
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_tail_is_caught_by_the_checkpoint() {
    let dir = tmpdir("tail");
    let db = write_trail(&dir, 20, 1000).await;
    exec(&db, "DELETE FROM audit WHERE seq > 15");
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
