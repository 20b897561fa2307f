//! The audit trail: exactly one record per request, written off the request path.
//!
//! A request first reserves a queue slot ([`AuditHandle::reserve`]), waiting a bounded time when
//! the writer is behind, so records are never dropped: back-pressure reaches clients instead.
//! A dedicated thread writes batches into SQLite, chaining each record to the previous one by
//! SHA-256, and periodically signs a checkpoint (record count + head hash) with the gateway's
//! Ed25519 key so that cutting the tail or replacing the whole chain is detectable by
//! [`verify`]. Secrets never enter a record: only hashes and sizes of message contents.

mod record;
mod rows;
mod segments;
mod sqlite;
mod text;
mod verify;
mod writer;

pub use record::{hex_lower, AuditRecord, Decision, Text};
pub use sqlite::open_db;
pub use verify::{verify, VerifyError, VerifyReport};
pub use writer::{load_or_create_key, AuditHandle, AuditSlot, AuditUnavailable, AuditWriter};

#[cfg(test)]
mod tests;
