//! Authentication: turns a request into a [`Principal`], or refuses it.
//!
//! Only the no-auth mode exists so far (the seed's "Local Development"): every request is the
//! principal `anonymous`. It is allowed only while every listener is on a loopback address; the
//! configuration refuses to start otherwise (unless `dangerous.allow_unauthenticated_non_loopback`).
//! Later modes (bearer, HMAC, JWT, OAuth) produce the same type, so the rest of the pipeline does
//! not change.

use std::net::IpAddr;
use std::sync::Arc;

/// How a principal was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// No authentication (loopback development mode).
    None,
}

impl AuthMethod {
    /// Stable name for the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
        }
    }
}

/// Who is calling. Only this module can make one, so every later step that takes a `&Principal`
/// runs after authentication by construction.
#[derive(Debug, Clone)]
pub struct Principal {
    id: Arc<str>,
    client_ip: IpAddr,
    method: AuthMethod,
}

impl Principal {
    /// Stable identity (the key sessions are bound to).
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The client's address.
    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    /// How it authenticated.
    pub fn method(&self) -> AuthMethod {
        self.method
    }
}

/// Why authentication failed. No variant can occur in the no-auth mode; the type exists so the
/// pipeline's shape and the error mapping are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// A credential was presented in the query string (it would end up in logs).
    #[error("credential in query string")]
    CredentialInQuery,
}

/// The authenticator, built from configuration.
#[derive(Debug, Clone)]
pub struct Authenticator {
    anonymous: Arc<str>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator {
            anonymous: Arc::from("anonymous"),
        }
    }
}

impl Authenticator {
    /// Authenticates one request.
    pub fn authenticate(
        &self,
        uri: &http::Uri,
        client_ip: IpAddr,
    ) -> Result<Principal, AuthnError> {
        // Even with no authentication, refuse the credential-in-URL habit outright.
        if let Some(q) = uri.query() {
            if q.split('&').any(|kv| {
                let k = kv.split('=').next().unwrap_or("");
                k.eq_ignore_ascii_case("access_token")
                    || k.eq_ignore_ascii_case("api_key")
                    || k.eq_ignore_ascii_case("token")
            }) {
                return Err(AuthnError::CredentialInQuery);
            }
        }
        Ok(Principal {
            id: self.anonymous.clone(),
            client_ip,
            method: AuthMethod::None,
        })
    }

    /// A principal for tests of later controls.
    #[cfg(test)]
    pub(crate) fn test_principal(id: &str) -> Principal {
        Principal {
            id: Arc::from(id),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            method: AuthMethod::None,
        }
    }
}
