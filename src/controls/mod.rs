//! The security controls, one module each, in pipeline order. Each owns its configuration, its
//! error type and its tests; none reaches into another's state. `app::pipeline` calls them.

pub mod abuse;
pub mod authn;
pub mod authz;
pub mod body;
pub mod concurrency;
pub mod idempotency;
pub mod mirror;
pub mod network;
pub mod origin;
pub mod output;
pub mod pinning;
pub mod policy;
pub mod ratelimit;
pub mod session;
pub mod ssrf;
pub mod validate;
