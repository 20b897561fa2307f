use std::time::Duration;

use http::Request;

use super::*;
use crate::config::{
    BearerToken, Canonical, HmacClient, HmacConfig, Secret, UpstreamConfig, UpstreamTarget,
};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn grant(id: &str, role: &str) -> Grant {
    Grant {
        id: Arc::from(id),
        roles: Arc::from([Arc::from(role)]),
        scopes: Arc::from([]),
        permissions: Arc::from([]),
    }
}

fn route(methods: &[&str]) -> UpstreamConfig {
    UpstreamConfig {
        name: "r".into(),
        target: UpstreamTarget::BuiltinDemo,
        headers: vec![],
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        auth: methods.iter().map(|m| Combo::parse_for_tests(m)).collect(),
        auth_own: None,
        required_scopes: vec![],
        oauth: None,
        isolation: crate::config::Isolation::PerPrincipal,
        in_hub: true,
        protocol: crate::config::UpstreamProtocol::Auto,
        roles: None,
        tools: vec![],
        breaker: Default::default(),
        outbound: Default::default(),
    }
}

/// Tokens for alice and bob; an HMAC client for alice and one for carol.
fn authn(routes: &[&[&str]]) -> (Authenticator, String, String) {
    let (ta, ha) = generate_token();
    let (tb, hb) = generate_token();
    let hash = |h: String| <[u8; 32]>::try_from(hex::decode(h).unwrap()).unwrap();
    let hmac_client = |id: &str| HmacClient {
        key_id: Some(id.to_owned()),
        secret: Secret::for_tests(SECRET),
        canonical: Canonical::V2,
        grant: grant(id, "signer"),
    };
    let cfg = AuthConfig {
        methods: vec![],
        bearer: vec![
            BearerToken {
                sha256: hash(ha),
                grant: grant("alice", "trader"),
            },
            BearerToken {
                sha256: hash(hb),
                grant: grant("bob", "viewer"),
            },
        ],
        hmac: HmacConfig {
            max_skew: Duration::from_secs(30),
            api_versions: vec!["1.0.0".into()],
            replay_capacity: 100,
            require_idempotency_key: false,
            clients: vec![hmac_client("alice"), hmac_client("carol")],
        },
        jwt: None,
        oauth: None,
        mtls_roles: Default::default(),
    };
    let routes: Vec<UpstreamConfig> = routes.iter().map(|r| route(r)).collect();
    let listener = crate::config::ListenerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        tls: None,
        routes: routes.iter().map(|r| Some(r.auth.clone())).collect(),
    };
    (
        Authenticator::new(
            &cfg,
            &routes,
            &crate::config::HubConfig {
                enabled: false,
                auth: Vec::new(),
                auth_own: None,
                required_scopes: Vec::new(),
                page_size: 500,
            },
            &[listener],
            crate::controls::ssrf::fetch::Fetcher::new(
                crate::config::SsrfConfig::default(),
                Duration::from_secs(1),
            ),
            Trust::default(),
        ),
        ta,
        tb,
    )
}

fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().method("POST").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn run(a: &Authenticator, route: usize, p: &Parts, body: &[u8]) -> Result<Principal, AuthnError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(a.begin(0, route, p, IpAddr::from([127, 0, 0, 1]), None, NOW))?
        .finish(p, body, NOW)
}

fn signed(
    key: &str,
    nonce: &str,
    body: &[u8],
    extra: &[(&'static str, String)],
) -> Vec<(String, String)> {
    let ts = NOW.to_string();
    let sig = sign(
        SECRET,
        Canonical::V2,
        &SignFields {
            method: "POST",
            path: "/mcp/r",
            timestamp: &ts,
            nonce,
            api_version: "1.0.0",
            key_id: key,
            ..Default::default()
        },
        body,
    );
    let mut h = vec![
        ("x-signature".to_owned(), sig),
        ("x-timestamp".to_owned(), ts),
        ("x-nonce".to_owned(), nonce.to_owned()),
        ("x-api-version".to_owned(), "1.0.0".to_owned()),
        ("x-key-id".to_owned(), key.to_owned()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    h
}

fn borrowed(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn bearer_token_names_its_principal() {
    let (a, alice, bob) = authn(&[&["bearer"]]);
    let p = run(
        &a,
        0,
        &parts("/mcp/r", &[("authorization", &format!("Bearer {alice}"))]),
        b"",
    )
    .unwrap();
    assert_eq!((&**p.id(), p.method()), ("alice", "bearer"));
    assert_eq!(&*p.roles()[0], "trader");
    let p = run(
        &a,
        0,
        &parts("/mcp/r", &[("authorization", &format!("Bearer {bob}"))]),
        b"",
    )
    .unwrap();
    assert_eq!(&**p.id(), "bob");
}

#[test]
fn bearer_negatives() {
    let (a, alice, _) = authn(&[&["bearer"]]);
    let cases: Vec<(Vec<(&str, String)>, AuthnError)> = vec![
        (vec![], AuthnError::Missing),
        (
            vec![("authorization", format!("Token {alice}"))],
            BearerError::Malformed.into(),
        ),
        (
            vec![("authorization", "Bearer ".into())],
            BearerError::Malformed.into(),
        ),
        (
            vec![("authorization", "Bearer pal_nope".into())],
            BearerError::Unknown.into(),
        ),
        (
            vec![
                ("authorization", format!("Bearer {alice}")),
                ("authorization", "Bearer x".into()),
            ],
            BearerError::Repeated.into(),
        ),
    ];
    for (h, want) in cases {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            run(&a, 0, &parts("/mcp/r", &h), b"").unwrap_err(),
            want,
            "{h:?}"
        );
    }
    // In the query string or a cookie, even a valid token is refused.
    let q = format!("/mcp/r?access_token={alice}");
    assert_eq!(
        run(&a, 0, &parts(&q, &[]), b"").unwrap_err(),
        AuthnError::CredentialInQuery
    );
    let c = format!("theme=dark; token={alice}");
    assert_eq!(
        run(&a, 0, &parts("/mcp/r", &[("cookie", &c)]), b"").unwrap_err(),
        AuthnError::CredentialInCookie
    );
}

#[test]
fn first_present_combination_decides_without_falling_back() {
    let (a, alice, _) = authn(&[&["bearer+hmac", "bearer", "none"]]);
    // No credential: the `none` alternative applies.
    assert_eq!(
        run(&a, 0, &parts("/mcp/r", &[]), b"").unwrap().method(),
        "none"
    );
    // A token alone: `bearer`.
    let auth = format!("Bearer {alice}");
    assert_eq!(
        run(&a, 0, &parts("/mcp/r", &[("authorization", &auth)]), b"")
            .unwrap()
            .method(),
        "bearer"
    );
    // A bad token is refused, never downgraded to `none`.
    assert_eq!(
        run(
            &a,
            0,
            &parts("/mcp/r", &[("authorization", "Bearer pal_bad")]),
            b""
        )
        .unwrap_err(),
        BearerError::Unknown.into()
    );
    // Token and signature of the same principal: both verified, grants merged.
    let body = b"{}";
    let mut h = signed("alice", "n1", body, &[]);
    h.push(("authorization".into(), auth.clone()));
    let p = run(&a, 0, &parts("/mcp/r", &borrowed(&h)), body).unwrap();
    assert_eq!(p.method(), "bearer+hmac");
    assert_eq!(p.roles().len(), 2);
    // A bad signature with a good token is refused, not downgraded to `bearer`.
    let mut h = signed("alice", "n2", body, &[]);
    h.push(("authorization".into(), auth.clone()));
    assert_eq!(
        run(&a, 0, &parts("/mcp/r", &borrowed(&h)), b"{\"x\":1}").unwrap_err(),
        HmacError::BadSignature.into()
    );
    // Alice's token with Carol's signature: two principals, refused.
    let mut h = signed("carol", "n3", body, &[]);
    h.push(("authorization".into(), auth));
    assert_eq!(
        run(&a, 0, &parts("/mcp/r", &borrowed(&h)), body).unwrap_err(),
        AuthnError::IdentityMismatch
    );
}

#[test]
fn routes_have_their_own_methods() {
    let (a, alice, _) = authn(&[&["none"], &["hmac"]]);
    let auth = format!("Bearer {alice}");
    assert_eq!(
        run(&a, 0, &parts("/mcp/r", &[]), b"").unwrap().method(),
        "none"
    );
    assert_eq!(
        run(&a, 1, &parts("/mcp/r", &[("authorization", &auth)]), b"").unwrap_err(),
        AuthnError::Missing
    );
    let h = signed("carol", "n1", b"", &[]);
    let p = run(&a, 1, &parts("/mcp/r", &borrowed(&h)), b"").unwrap();
    assert_eq!((&**p.id(), p.method()), ("carol", "hmac"));
}

#[test]
fn scopes_form_a_colon_hierarchy() {
    let g = |s: &[&str]| -> Vec<Arc<str>> { s.iter().map(|x| Arc::from(*x)).collect() };
    assert!(has_scope(&g(&["mcp:tools"]), "mcp:tools"));
    assert!(has_scope(&g(&["mcp"]), "mcp:tools:call"));
    assert!(!has_scope(&g(&["mcp:tool"]), "mcp:tools"));
    assert!(!has_scope(&g(&["mcp:tools:call"]), "mcp:tools"));
    assert!(!has_scope(&g(&[]), "mcp:tools"));
}

#[test]
fn a_static_token_is_not_taken_for_a_jwt_when_both_are_accepted() {
    let (a, alice, _) = authn(&[&["jwt", "bearer"]]);
    let auth = format!("Bearer {alice}");
    let p = run(&a, 0, &parts("/mcp/r", &[("authorization", &auth)]), b"").unwrap();
    assert_eq!((&**p.id(), p.method()), ("alice", "bearer"));
}
