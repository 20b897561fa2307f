use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::AuditConfig;

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        ts_ms: 1_700_000_000_000 + i as i64,
        request_id: format!("req-{i}"),
        principal: "anonymous".into(),
        auth_method: "none".into(),
        client_ip: "127.0.0.1".into(),
        transport: "http".into(),
        upstream: Some("demo".into()),
        http_method: "POST".into(),
        rpc_method: Some("tools/call".into()),
        tool: Some("echo".into()),
        input_hash: Some("ab".repeat(32)),
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

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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
    // Renumbering to hide the gap still breaks the prev_hash link.
    exec(&db, "UPDATE audit SET seq = seq - 1 WHERE seq > 11");
    let err = verify(&db, &dir.join("audit-signing.pub")).unwrap_err();
    assert!(
        matches!(err, VerifyError::Broken { seq: 11, why, .. } if why.contains("prev_hash")),
        "{err}"
    );
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
