//! `palisade audit verify`: recomputes the chain and checks it against the last signed checkpoint.

use std::path::Path;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::record::link;
use super::sqlite;

/// What an intact trail looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: i64,
    /// Records covered by the last signed checkpoint.
    pub checkpointed: i64,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The database could not be read.
    #[error("cannot read audit database: {0}")]
    Io(String),
    /// A record's content no longer matches its hash: it was edited, or (in a trail that does
    /// not store each row's previous hash) a record before it was removed and the rest renumbered.
    #[error(
        "record {seq} (request {request_id}) does not match its hash: it was modified, or a record before it was removed"
    )]
    Modified {
        /// Sequence number of the record.
        seq: i64,
        /// Its request id.
        request_id: String,
    },
    /// A record does not follow the one before it (a record was deleted or inserted).
    #[error("chain broken at record {seq} (request {request_id}): {why}")]
    Broken {
        /// Sequence number of the first record that does not follow on.
        seq: i64,
        /// Its request id.
        request_id: String,
        /// What does not match.
        why: &'static str,
    },
    /// No signed checkpoint exists, so truncation could not be detected.
    #[error("no signed checkpoint in the database")]
    NoCheckpoint,
    /// The checkpoint's signature is not valid for the trusted public key.
    #[error("last checkpoint signature is invalid for the trusted key")]
    BadSignature,
    /// Fewer records than the last checkpoint covers: the tail was cut off.
    #[error("truncated: the last checkpoint covers {expected} records but only {found} remain")]
    Truncated {
        /// Records covered by the checkpoint.
        expected: i64,
        /// Records present.
        found: i64,
    },
    /// The record at the checkpoint does not have the signed head hash (chain replaced).
    #[error("record {seq} does not match the signed checkpoint: the chain was rewritten")]
    CheckpointMismatch {
        /// The checkpoint's record count.
        seq: i64,
    },
}

/// Verifies the trail in `db` against the trusted public key in `pubkey_file` (hex).
pub fn verify(db: &Path, pubkey_file: &Path) -> Result<VerifyReport, VerifyError> {
    if !db.exists() {
        return Err(VerifyError::Io(format!("{} does not exist", db.display())));
    }
    let key_hex = std::fs::read_to_string(pubkey_file)
        .map_err(|e| VerifyError::Io(format!("{}: {e}", pubkey_file.display())))?;
    let key_bytes: [u8; 32] = hex::decode(key_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| VerifyError::Io(format!("{} is not a public key", pubkey_file.display())))?;
    let trusted =
        VerifyingKey::from_bytes(&key_bytes).map_err(|e| VerifyError::Io(e.to_string()))?;
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| VerifyError::Io(e.to_string()))?;
    let checkpoint = sqlite::last_checkpoint(&conn).map_err(|e| VerifyError::Io(e.to_string()))?;

    let mut expected_seq = 1i64;
    let mut head = [0u8; 32];
    let mut failure = None;
    let mut hash_at_checkpoint = None;
    sqlite::for_each_row(&conn, |row| {
        if row.seq != expected_seq {
            failure = Some(VerifyError::Broken {
                seq: expected_seq,
                request_id: row.request_id,
                why: "a record is missing before this one",
            });
            return false;
        }
        // Older trails also store the previous hash in each row: a broken link is named as one.
        if row.prev_hash.is_some_and(|p| p != hex::encode(head)) {
            failure = Some(VerifyError::Broken {
                seq: row.seq,
                request_id: row.request_id,
                why: "prev_hash does not match the previous record",
            });
            return false;
        }
        let computed = row.canonical.as_deref().map(|c| link(&head, c));
        let Some(computed) = computed.filter(|c| row.hash.as_ref() == Some(c)) else {
            failure = Some(VerifyError::Modified {
                seq: row.seq,
                request_id: row.request_id,
            });
            return false;
        };
        head = computed;
        if checkpoint
            .as_ref()
            .is_some_and(|c| c.record_count == row.seq)
        {
            hash_at_checkpoint = Some(hex::encode(computed));
        }
        expected_seq += 1;
        true
    })
    .map_err(|e| VerifyError::Io(e.to_string()))?;
    if let Some(f) = failure {
        return Err(f);
    }
    let records = expected_seq - 1;
    let c = checkpoint.ok_or(VerifyError::NoCheckpoint)?;
    let sig_bytes: [u8; 64] = hex::decode(&c.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(VerifyError::BadSignature)?;
    trusted
        .verify(
            &sqlite::checkpoint_message(c.record_count, &c.head_hash, c.ts_ms),
            &Signature::from_bytes(&sig_bytes),
        )
        .map_err(|_| VerifyError::BadSignature)?;
    if records < c.record_count {
        return Err(VerifyError::Truncated {
            expected: c.record_count,
            found: records,
        });
    }
    let matches = if c.record_count == 0 {
        c.head_hash == hex::encode([0u8; 32])
    } else {
        hash_at_checkpoint.as_deref() == Some(c.head_hash.as_str())
    };
    if !matches {
        return Err(VerifyError::CheckpointMismatch {
            seq: c.record_count,
        });
    }
    Ok(VerifyReport {
        records,
        checkpointed: c.record_count,
    })
}
