//! Every rejection, and the ONE place that maps it to what the client sees.
//!
//! Each control has its own error type; [`Rejection`] wraps them, and [`Rejection::mapping`] is
//! an exhaustive match (no catch-all) giving the HTTP status, the JSON-RPC code, the stable
//! MCP code, a generic client message, and the control/reason pair written to the audit trail.
//! The client never sees the details; the audit record and the log do.

use http::StatusCode;

use crate::audit::AuditUnavailable;
use crate::controls::abuse::{AbuseError, Strike};
use crate::controls::authn::{AuthnError, BearerError, HmacError, JwtError};
use crate::controls::authz::AuthzError;
use crate::controls::body::BodyError;
use crate::controls::concurrency::Busy;
use crate::controls::idempotency::IdempotencyError;
use crate::controls::mirror::MirrorError;
use crate::controls::network::NetworkError;
use crate::controls::origin::OriginError;
use crate::controls::policy::PolicyError;
use crate::controls::ratelimit::LimitError;
use crate::controls::session::SessionError;
use crate::controls::validate::ValidateError;
use crate::hub::HubError;
use crate::proto::codes::rpc;
use crate::proto::json::JsonError;
use crate::proto::{EnvelopeError, McpCode};
use crate::upstream::outbound::Throttled;
use crate::upstream::{ResponseError, UpstreamError};

/// Why a request was not (fully) served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No MCP route at this path.
    #[error("no route")]
    NoRoute,
    /// HTTP method not supported on the route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The audit writer could not take a record in time.
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
    /// Host/Origin check.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// Authentication.
    #[error(transparent)]
    Authn(#[from] AuthnError),
    /// Reading the body.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// JSON-RPC envelope.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Mirrored `Mcp-Method` / `Mcp-Name` headers (2026-07-28).
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// `Idempotency-Key` reuse.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// Session binding.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Calling the upstream.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream's answer.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// The hub (`/mcp`, stdio routes).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// Authorization.
    #[error(transparent)]
    Authz(#[from] AuthzError),
    /// Input validation.
    #[error(transparent)]
    Validate(#[from] ValidateError),
    /// The client's address (IP lists).
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Rate limits.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A blocked or quarantined client.
    #[error(transparent)]
    Abuse(#[from] AbuseError),
    /// Too many calls in flight.
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// What a rejection looks like on the wire and in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON-RPC error code.
    pub rpc: i64,
    /// Stable error code in `error.data.code`.
    pub code: McpCode,
    /// Generic message for the client.
    pub message: &'static str,
    /// The control that decided (audit `control`).
    pub control: &'static str,
    /// Its reason code (audit `reason`).
    pub reason: &'static str,
    /// Upstream-side failures of a request are answered in-band (HTTP 200 with the JSON-RPC error)
    /// so clients see an error for that request instead of a failed transport.
    pub in_band: bool,
    /// The gateway refused the request (audit decision `deny`); false for requests it allowed
    /// that then failed (upstream errors, unknown names).
    pub deny: bool,
}

const fn m(
    status: StatusCode,
    rpc: i64,
    code: McpCode,
    message: &'static str,
    control: &'static str,
    reason: &'static str,
) -> Mapping {
    Mapping {
        status,
        rpc,
        code,
        message,
        control,
        reason,
        in_band: false,
        deny: true,
    }
}

const fn upstream(
    status: StatusCode,
    code: McpCode,
    message: &'static str,
    reason: &'static str,
) -> Mapping {
    Mapping {
        status,
        rpc: rpc::INTERNAL_ERROR,
        code,
        message,
        control: "upstream",
        reason,
        in_band: true,
        deny: false,
    }
}

impl Rejection {
    /// What this refusal counts for in abuse response (auto-block, quarantine), if anything.
    /// A missing credential is not a failed attempt: it is how clients discover that a route
    /// needs one (and where to get it).
    pub fn strike(&self) -> Option<Strike> {
        let suspicious = |v: &ValidateError| {
            matches!(
                v,
                ValidateError::PrototypeKey(_)
                    | ValidateError::Ssrf(_)
                    | ValidateError::Withheld { .. }
                    | ValidateError::Rule {
                        reason: "arg_content_pattern",
                        ..
                    }
            )
        };
        match self {
            Rejection::Authn(AuthnError::Hmac(HmacError::BadSignature)) => {
                Some(Strike::HmacMismatch)
            }
            Rejection::Authn(AuthnError::Missing | AuthnError::InsufficientScope) => None,
            Rejection::Authn(_) => Some(Strike::AuthFailure),
            Rejection::Limit(LimitError::Exceeded { .. }) => Some(Strike::LimitViolation),
            Rejection::Authz(_) | Rejection::Hub(HubError::Authz(_)) => Some(Strike::Suspicious),
            Rejection::Validate(v) | Rejection::Hub(HubError::Validate(v)) if suspicious(v) => {
                Some(Strike::Suspicious)
            }
            _ => None,
        }
    }

    /// The one mapping table. Documented in README.md ("Errors").
    pub fn mapping(&self) -> Mapping {
        use McpCode as C;
        use StatusCode as S;
        let invalid = |reason| {
            m(
                S::BAD_REQUEST,
                rpc::INVALID_REQUEST,
                C::InvalidArgs,
                "Invalid request",
                "envelope",
                reason,
            )
        };
        match self {
            Rejection::NoRoute => m(
                S::NOT_FOUND,
                rpc::METHOD_NOT_FOUND,
                C::NoHandler,
                "Not found",
                "route",
                "no_route",
            ),
            Rejection::MethodNotAllowed => m(
                S::METHOD_NOT_ALLOWED,
                rpc::SERVER_ERROR,
                C::NoHandler,
                "Method not allowed",
                "route",
                "method_not_allowed",
            ),
            Rejection::Audit(AuditUnavailable) => m(
                S::SERVICE_UNAVAILABLE,
                rpc::SERVER_ERROR,
                C::Internal,
                "Service busy",
                "audit",
                "audit_queue_full",
            ),
            Rejection::Origin(e) => {
                let reason = match e {
                    OriginError::Foreign => "foreign_origin",
                    OriginError::Null => "null_origin",
                    OriginError::Duplicate => "duplicate_origin",
                    OriginError::ForeignHost => "foreign_host",
                    OriginError::BadHost => "bad_host",
                };
                m(
                    S::FORBIDDEN,
                    rpc::SERVER_ERROR,
                    C::Unauthorized,
                    "Forbidden",
                    "origin",
                    reason,
                )
            }
            Rejection::Authn(e) => {
                let reason = match e {
                    AuthnError::CredentialInQuery => "credential_in_query",
                    AuthnError::CredentialInCookie => "credential_in_cookie",
                    AuthnError::Missing => "missing_credential",
                    AuthnError::IdentityMismatch => "identity_mismatch",
                    AuthnError::InsufficientScope => "insufficient_scope",
                    AuthnError::Bearer(b) => match b {
                        BearerError::Malformed => "bearer_malformed",
                        BearerError::Repeated => "bearer_repeated",
                        BearerError::TooLong => "bearer_too_long",
                        BearerError::Unknown => "bearer_unknown",
                    },
                    AuthnError::Hmac(h) => match h {
                        HmacError::MissingHeader(_) => "hmac_missing_header",
                        HmacError::MalformedHeader(_) => "hmac_malformed_header",
                        HmacError::BadTimestamp => "hmac_bad_timestamp",
                        HmacError::Stale => "hmac_stale",
                        HmacError::Future => "hmac_future",
                        HmacError::UnsupportedVersion => "hmac_unsupported_version",
                        HmacError::UnknownKey => "hmac_unknown_key",
                        HmacError::BadSignature => "hmac_bad_signature",
                        HmacError::ReplayedNonce => "hmac_replayed_nonce",
                        HmacError::ReplayedSignature => "hmac_replayed_signature",
                        HmacError::StoreFull => "hmac_replay_store_full",
                    },
                    AuthnError::Jwt(j) => match j {
                        JwtError::TooLong => "jwt_too_long",
                        JwtError::Malformed => "jwt_malformed",
                        JwtError::AlgNone => "jwt_alg_none",
                        JwtError::UnsupportedAlg => "jwt_unsupported_alg",
                        JwtError::EmbeddedKey => "jwt_embedded_key",
                        JwtError::Crit => "jwt_crit",
                        JwtError::UnknownKid => "jwt_unknown_kid",
                        JwtError::AlgMismatch => "jwt_alg_mismatch",
                        JwtError::BadSignature => "jwt_bad_signature",
                        JwtError::Expired => "jwt_expired",
                        JwtError::NotYetValid => "jwt_not_yet_valid",
                        JwtError::MissingClaim => "jwt_missing_claim",
                        JwtError::WrongIssuer => "jwt_wrong_issuer",
                        JwtError::WrongAudience => "jwt_wrong_audience",
                        JwtError::Revoked => "jwt_revoked",
                        JwtError::WrongType => "jwt_wrong_type",
                    },
                };
                match e {
                    // Authenticated, but the token does not carry the route's scopes.
                    AuthnError::InsufficientScope => m(
                        S::FORBIDDEN,
                        rpc::SERVER_ERROR,
                        C::Unauthorized,
                        "Forbidden",
                        "authn",
                        reason,
                    ),
                    // Too many live nonces for one client: a rate problem, not a failed login.
                    AuthnError::Hmac(HmacError::StoreFull) => m(
                        S::TOO_MANY_REQUESTS,
                        rpc::SERVER_ERROR,
                        C::RateLimitExceeded,
                        "Too many requests",
                        "authn",
                        reason,
                    ),
                    // Credentials in URLs are a request-shape error, not a failed login.
                    AuthnError::CredentialInQuery | AuthnError::CredentialInCookie => m(
                        S::BAD_REQUEST,
                        rpc::SERVER_ERROR,
                        C::Unauthorized,
                        "Credentials are accepted only in headers",
                        "authn",
                        reason,
                    ),
                    _ => m(
                        S::UNAUTHORIZED,
                        rpc::SERVER_ERROR,
                        C::Unauthorized,
                        "Unauthorized",
                        "authn",
                        reason,
                    ),
                }
            }
            Rejection::Body(e) => match e {
                BodyError::TooLarge(_) => m(
                    S::PAYLOAD_TOO_LARGE,
                    rpc::INVALID_REQUEST,
                    C::PayloadTooLarge,
                    "Payload too large",
                    "body",
                    "too_large",
                ),
                BodyError::Encoded => m(
                    S::UNSUPPORTED_MEDIA_TYPE,
                    rpc::INVALID_REQUEST,
                    C::InvalidArgs,
                    "Content encoding not supported",
                    "body",
                    "content_encoding",
                ),
                BodyError::Read(_) => m(
                    S::BAD_REQUEST,
                    rpc::PARSE_ERROR,
                    C::InvalidArgs,
                    "Invalid request body",
                    "body",
                    "read_error",
                ),
                BodyError::TooSlow(_) => m(
                    S::REQUEST_TIMEOUT,
                    rpc::INVALID_REQUEST,
                    C::Timeout,
                    "Request body too slow",
                    "connections",
                    "body_too_slow",
                ),
            },
            Rejection::Envelope(e) => match e {
                EnvelopeError::Json(j) => match j {
                    JsonError::Utf8 => m(
                        S::BAD_REQUEST,
                        rpc::PARSE_ERROR,
                        C::InvalidArgs,
                        "Parse error",
                        "envelope",
                        "invalid_utf8",
                    ),
                    JsonError::Syntax(_) => m(
                        S::BAD_REQUEST,
                        rpc::PARSE_ERROR,
                        C::InvalidArgs,
                        "Parse error",
                        "envelope",
                        "invalid_json",
                    ),
                    JsonError::TooDeep(_) => invalid("too_deep"),
                    JsonError::DuplicateKey(_) => invalid("duplicate_key"),
                    JsonError::CaseVariantKey(_) => invalid("case_variant_key"),
                    JsonError::NotAnObject => invalid("not_an_object"),
                    JsonError::Array => invalid("batch"),
                },
                EnvelopeError::Version => invalid("jsonrpc_version"),
                EnvelopeError::BadId => invalid("bad_id"),
                EnvelopeError::BadMethod => invalid("bad_method"),
                EnvelopeError::BadParams => invalid("bad_params"),
                EnvelopeError::ResultAndError => invalid("result_and_error"),
                EnvelopeError::Unclassifiable => invalid("unclassifiable"),
            },
            Rejection::Mirror(e) => {
                let reason = match e {
                    MirrorError::Missing(_) => "header_missing",
                    MirrorError::Repeated(_) => "header_repeated",
                    MirrorError::Malformed(_) => "header_malformed",
                    MirrorError::Mismatch(_) => "header_mismatch",
                };
                m(
                    S::BAD_REQUEST,
                    rpc::HEADER_MISMATCH,
                    C::InvalidArgs,
                    "Bad Request: Mcp-Method/Mcp-Name headers must match the body",
                    "mirror",
                    reason,
                )
            }
            Rejection::Idempotency(e) => match e {
                IdempotencyError::Conflict => m(
                    S::UNPROCESSABLE_ENTITY,
                    rpc::INVALID_REQUEST,
                    C::IdempotencyConflict,
                    "Idempotency key reused for a different request",
                    "idempotency",
                    "conflict",
                ),
                IdempotencyError::InFlight => m(
                    S::CONFLICT,
                    rpc::INVALID_REQUEST,
                    C::IdempotencyConflict,
                    "A request with this idempotency key is in progress",
                    "idempotency",
                    "in_flight",
                ),
                IdempotencyError::Malformed => m(
                    S::BAD_REQUEST,
                    rpc::INVALID_REQUEST,
                    C::IdempotencyConflict,
                    "Invalid Idempotency-Key",
                    "idempotency",
                    "malformed_key",
                ),
            },
            Rejection::Session(e) => match e {
                SessionError::Missing => m(
                    S::BAD_REQUEST,
                    rpc::SERVER_ERROR,
                    C::InvalidArgs,
                    "Bad Request: session id required",
                    "session",
                    "missing",
                ),
                SessionError::Unknown => m(
                    S::NOT_FOUND,
                    rpc::SERVER_ERROR,
                    C::Unauthorized,
                    "Session not found",
                    "session",
                    "unknown",
                ),
                SessionError::OtherPrincipal => m(
                    S::NOT_FOUND,
                    rpc::SERVER_ERROR,
                    C::Unauthorized,
                    "Session not found",
                    "session",
                    "other_principal",
                ),
                SessionError::OtherRoute => m(
                    S::NOT_FOUND,
                    rpc::SERVER_ERROR,
                    C::Unauthorized,
                    "Session not found",
                    "session",
                    "other_route",
                ),
                SessionError::InitializeInSession => m(
                    S::BAD_REQUEST,
                    rpc::INVALID_REQUEST,
                    C::InvalidArgs,
                    "Bad Request: initialize must not carry a session id",
                    "session",
                    "initialize_in_session",
                ),
            },
            Rejection::Upstream(e) => match e {
                UpstreamError::Unreachable(_) => upstream(
                    S::BAD_GATEWAY,
                    C::BackendUnavailable,
                    "Upstream unavailable",
                    "unreachable",
                ),
                UpstreamError::Timeout => upstream(
                    S::GATEWAY_TIMEOUT,
                    C::Timeout,
                    "Upstream timeout",
                    "timeout",
                ),
                UpstreamError::Credential(_) => upstream(
                    S::BAD_GATEWAY,
                    C::BackendUnavailable,
                    "Upstream unavailable",
                    "upstream_credential",
                ),
                UpstreamError::Throttled(t) => throttled(t),
                UpstreamError::CircuitOpen => upstream(
                    S::SERVICE_UNAVAILABLE,
                    C::BackendUnavailable,
                    "Upstream unavailable",
                    "circuit_open",
                ),
            },
            Rejection::Response(e) => match e {
                ResponseError::Protocol(_) => upstream(
                    S::BAD_GATEWAY,
                    C::BackendUnavailable,
                    "Upstream error",
                    "protocol_error",
                ),
                ResponseError::TooLarge => upstream(
                    S::BAD_GATEWAY,
                    C::BackendUnavailable,
                    "Upstream error",
                    "response_too_large",
                ),
                ResponseError::Read(_) => upstream(
                    S::BAD_GATEWAY,
                    C::BackendUnavailable,
                    "Upstream error",
                    "read_error",
                ),
            },
            Rejection::Hub(e) => hub(e),
            Rejection::Authz(e) => authz(e),
            Rejection::Validate(e) => validate(e),
            Rejection::Network(e) => m(
                S::FORBIDDEN,
                rpc::SERVER_ERROR,
                C::Unauthorized,
                "Forbidden",
                "network",
                match e {
                    NetworkError::Blocked(_) => "ip_blocked",
                    NetworkError::NotAllowed(_) => "ip_not_allowed",
                },
            ),
            Rejection::Busy(Busy(what)) => m(
                S::TOO_MANY_REQUESTS,
                rpc::SERVER_ERROR,
                C::RateLimitExceeded,
                "Too many calls in flight",
                "concurrency",
                match *what {
                    "principal" => "busy_principal",
                    "tool" => "busy_tool",
                    _ => "busy_upstream",
                },
            ),
            Rejection::Abuse(e) => m(
                S::FORBIDDEN,
                rpc::SERVER_ERROR,
                C::Unauthorized,
                "Forbidden",
                "abuse",
                match e {
                    AbuseError::Blocked { .. } => "blocked",
                    AbuseError::Quarantined { .. } => "quarantined",
                },
            ),
            Rejection::Limit(e) => m(
                S::TOO_MANY_REQUESTS,
                rpc::SERVER_ERROR,
                C::RateLimitExceeded,
                "Rate limit exceeded",
                "ratelimit",
                match e {
                    LimitError::Exceeded { .. } => "rate_limited",
                    LimitError::Full(_) => "limiter_full",
                },
            ),
        }
    }
}

/// Authorization refusals. A hidden target answers exactly as one that does not exist (same
/// status, codes and message as the hub's unknown name), but is audited as a denial.
fn authz(e: &AuthzError) -> Mapping {
    let forbidden = |reason| {
        m(
            StatusCode::FORBIDDEN,
            rpc::SERVER_ERROR,
            McpCode::Unauthorized,
            "Forbidden",
            "authz",
            reason,
        )
    };
    match e {
        AuthzError::Forbidden(_) => forbidden("no_permission"),
        AuthzError::NeedsSignature(_) => forbidden("needs_signature"),
        AuthzError::Policy(p) => Mapping {
            control: "policy",
            reason: match p {
                PolicyError::Denied { .. } => "policy_denied",
                PolicyError::Failed { .. } => "policy_error",
            },
            ..forbidden("")
        },
        AuthzError::Hidden { why, .. } => Mapping {
            status: StatusCode::BAD_REQUEST,
            rpc: rpc::INVALID_PARAMS,
            code: McpCode::UnknownTool,
            message: "Unknown tool, prompt or resource",
            control: "authz",
            reason: why.reason(),
            in_band: true,
            deny: true,
        },
    }
}

/// Input validation refusals: invalid params, answered in-band (HTTP 200, like the upstream's
/// own -32602 would be) so that clients report them as the call's error.
fn validate(e: &ValidateError) -> Mapping {
    let (code, reason) = e.code_and_reason();
    Mapping {
        status: StatusCode::BAD_REQUEST,
        rpc: rpc::INVALID_PARAMS,
        code,
        message: e.client_message(),
        control: match e {
            ValidateError::Ssrf(_) => "ssrf",
            ValidateError::Withheld { .. } => "pinning",
            _ => "validate",
        },
        reason,
        in_band: true,
        deny: true,
    }
}

/// The gateway held a call back from its upstream (429 backoff, outbound rate).
fn throttled(t: &Throttled) -> Mapping {
    m(
        StatusCode::TOO_MANY_REQUESTS,
        rpc::SERVER_ERROR,
        McpCode::RateLimitExceeded,
        "Upstream busy",
        "outbound",
        match t {
            Throttled::Backoff { .. } => "upstream_backoff",
            Throttled::Rate { .. } => "outbound_rate",
        },
    )
}

impl Rejection {
    /// Seconds the client should wait before trying again, when the refusal says.
    pub fn retry_after_secs(&self, now_ms: u64) -> Option<u64> {
        match self {
            Rejection::Limit(e) => Some(e.retry_after_secs()),
            Rejection::Busy(_) => Some(1),
            Rejection::Abuse(e) => e.retry_after_secs(now_ms),
            Rejection::Upstream(UpstreamError::Throttled(t))
            | Rejection::Hub(HubError::Throttled(t)) => Some(t.retry_after_secs()),
            _ => None,
        }
    }
}

fn hub(e: &HubError) -> Mapping {
    use McpCode as C;
    use StatusCode as S;
    let down = |reason| {
        upstream(
            S::BAD_GATEWAY,
            C::BackendUnavailable,
            "Upstream error",
            reason,
        )
    };
    let in_band = |rpc, code, message, reason| Mapping {
        status: S::BAD_REQUEST,
        rpc,
        code,
        message,
        control: "hub",
        reason,
        in_band: true,
        deny: false,
    };
    let bad = |rpc, message, reason| m(S::BAD_REQUEST, rpc, C::InvalidArgs, message, "hub", reason);
    match e {
        HubError::Throttled(t) => throttled(t),
        HubError::Upstream(_) => down("upstream_error"),
        HubError::InitializeRefused(_) => down("upstream_refused_initialize"),
        HubError::Unavailable(_) => down("upstream_unavailable"),
        HubError::NoResponse => down("no_response"),
        HubError::SessionGone => down("upstream_session_expired"),
        HubError::TooManyChildren => down("too_many_children"),
        HubError::Sandbox(_) => down("sandbox_refused"),
        HubError::Timeout => upstream(
            S::GATEWAY_TIMEOUT,
            C::Timeout,
            "Upstream timeout",
            "timeout",
        ),
        HubError::Unknown(_) => in_band(
            rpc::INVALID_PARAMS,
            C::UnknownTool,
            "Unknown tool, prompt or resource",
            "unknown_name",
        ),
        HubError::InvalidParams(_) => in_band(
            rpc::INVALID_PARAMS,
            C::InvalidArgs,
            "Invalid params",
            "invalid_params",
        ),
        HubError::MethodNotFound { modern: false } => in_band(
            rpc::METHOD_NOT_FOUND,
            C::NoHandler,
            "Method not found",
            "method_not_found",
        ),
        // 2026-07-28: an unknown method is HTTP 404 with -32601.
        HubError::MethodNotFound { modern: true } => m(
            S::NOT_FOUND,
            rpc::METHOD_NOT_FOUND,
            C::NoHandler,
            "Method not found",
            "hub",
            "method_not_found",
        ),
        HubError::Authz(e) => authz(e),
        HubError::Validate(e) => validate(e),
        HubError::Mirror(_) => m(
            S::BAD_REQUEST,
            rpc::HEADER_MISMATCH,
            C::InvalidArgs,
            "Bad Request: Mcp-Param headers must match the arguments",
            "mirror",
            "param_header_mismatch",
        ),
        HubError::MissingMetaVersion => bad(
            rpc::INVALID_PARAMS,
            "Invalid params",
            "meta_version_missing",
        ),
        HubError::UnsupportedVersion(_) => bad(
            rpc::UNSUPPORTED_VERSION,
            "Unsupported protocol version",
            "unsupported_version",
        ),
        HubError::UnknownAnswer => bad(rpc::INVALID_REQUEST, "Invalid request", "unknown_answer"),
        HubError::RequestState(e) => {
            use crate::hub::mrtr::StateError as E;
            bad(
                rpc::INVALID_PARAMS,
                "Invalid or expired requestState",
                match e {
                    E::Malformed => "request_state_malformed",
                    E::Unknown => "request_state_unknown",
                    E::OtherPrincipal => "request_state_other_principal",
                    E::OtherRequest => "request_state_other_request",
                },
            )
        }
    }
}
