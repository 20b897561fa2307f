//! The wire protocol: a strict JSON-RPC 2.0 envelope kept as a view over the original bytes, the
//! stable error codes, JSON-RPC error bodies and an incremental Server-Sent-Events splitter.

pub mod codes;
pub mod envelope;
pub mod json;
pub mod sse;

pub use codes::McpCode;
pub use envelope::{Envelope, EnvelopeError, Id, Kind};
