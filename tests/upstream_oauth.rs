//! The gateway as an OAuth client of its upstreams: its own token (client_credentials) is
//! fetched, cached, refreshed ahead of expiry and sent upstream; the client's never is.

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::*;

/// A token endpoint: records each request's (client_id, form) and issues `tok-N`.
async fn token_endpoint(seen: Arc<Mutex<Vec<(String, String)>>>) -> std::net::SocketAddr {
    http_server(move |req: http::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let basic = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let form = String::from_utf8(req.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
            let creds = base64::engine::general_purpose::STANDARD
                .decode(basic.trim_start_matches("Basic "))
                .map(|b| String::from_utf8(b).unwrap())
                .unwrap_or_default();
            let (id, secret) = creds.split_once(':').unwrap_or(("", ""));
            let n = {
                let mut s = seen.lock().unwrap();
                s.push((id.to_owned(), form.clone()));
                s.len()
            };
            let exchange = form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange");
            let (status, body) = match (id, secret) {
                ("broken", _) => (500, "{}".to_owned()),
                (_, "up-secret") if exchange => (200, format!(r#"{{"access_token":"exchanged-{n}","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}}"#)),
                (_, "up-secret") => (200, format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":3600}}"#)),
                _ => (401, r#"{"error":"invalid_client"}"#.to_owned()),
            };
            Response::builder().status(status).header("content-type", "application/json")
                .body(Full::new(Bytes::from(body))).unwrap()
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tokens_are_fetched_cached_refreshed_and_never_the_clients() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let as_addr = token_endpoint(seen.clone()).await;
    let (up, addr) = Scripted::start().await;
    let route = |name: &str, client: &str, refresh: u64| {
        format!(
            "[[upstream]]\nname = \"{name}\"\nurl = \"http://{addr}/mcp\"\n[upstream.oauth]\n\
             token_url = \"http://{as_addr}/token\"\nclient_id = \"{client}\"\nclient_secret = \"up-secret\"\n\
             scope = \"mcp:tools\"\nresource = \"https://upstream.test/mcp\"\nrefresh_before_secs = {refresh}\n"
        )
    };
    let mut gw = Gateway::start(
        "upstream-oauth",
        &format!(
            "{}{}{}{}",
            LOCAL_IDP,
            route("cached", "palisade", 60),
            route("eager", "palisade-eager", 3600),
            route("broken", "broken", 60)
        ),
    );
    let client_token = [("authorization", "Bearer the-clients-own-token")];
    // Two requests on a route whose token lives an hour: one fetch, the same token upstream.
    for _ in 0..2 {
        assert_eq!(
            post(&gw.url("/mcp/cached"), &client_token, INIT)
                .await
                .status,
            StatusCode::OK
        );
    }
    // A route that refreshes an hour ahead of expiry treats each token as due: a fetch per call.
    for _ in 0..2 {
        assert_eq!(
            post(&gw.url("/mcp/eager"), &client_token, INIT)
                .await
                .status,
            StatusCode::OK
        );
    }
    let fetches = seen.lock().unwrap().clone();
    assert_eq!(
        fetches.iter().filter(|(id, _)| id == "palisade").count(),
        1,
        "{fetches:?}"
    );
    assert_eq!(
        fetches
            .iter()
            .filter(|(id, _)| id == "palisade-eager")
            .count(),
        2,
        "{fetches:?}"
    );
    let form = &fetches[0].1;
    assert!(
        form.contains("grant_type=client_credentials")
            && form.contains("resource=https%3A%2F%2Fupstream.test%2Fmcp")
            && form.contains("scope=mcp%3Atools"),
        "{form}"
    );
    let sent: Vec<String> = up
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| {
            h.get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0], "Bearer tok-1");
    assert_eq!(sent[1], "Bearer tok-1", "cached");
    assert_ne!(sent[2], sent[3], "refreshed");
    assert!(sent.iter().all(|a| !a.contains("the-clients-own-token")));
    // No token, no request: the upstream is not called without its credential.
    let r = post(&gw.url("/mcp/broken"), &client_token, INIT).await;
    assert_eq!(r.code(), "MCP-003");
    assert_eq!(up.count(), 4);
    gw.stop();
    assert!(gw.audit_rows().iter().any(|r| r.3 == "upstream_credential"));
}

#[tokio::test(flavor = "multi_thread")]
async fn token_exchange_gives_each_caller_its_own_upstream_token() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let as_addr = token_endpoint(seen.clone()).await;
    let (up, addr) = Scripted::start().await;
    let secret = "exchange-test-hs256-secret-0123456789";
    let oauth = format!(
        "[upstream.oauth]\ntoken_url = \"http://{as_addr}/token\"\nclient_id = \"palisade\"\n\
         client_secret = \"up-secret\"\ngrant = \"token_exchange\"\n"
    );
    let mut gw = Gateway::start(
        "token-exchange",
        &format!(
            "{LOCAL_IDP}[auth]\nmethods = [\"jwt\"]\n[auth.jwt]\nissuer = [\"https://idp.test\"]\naudience = [\"gw\"]\n\
             [[auth.jwt.keys]]\nalg = \"HS256\"\nsecret = \"{secret}\"\n\
             [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\n{oauth}\
             [[upstream]]\nname = \"open\"\nurl = \"http://{addr}/mcp\"\nauth = [\"none\"]\n{oauth}"
        ),
    );
    let jwt = |sub: &str| {
        let claims = serde_json::json!({"iss": "https://idp.test", "aud": "gw", "sub": sub, "exp": unix_now() + 600});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let (a, b) = (jwt("agent-a"), jwt("agent-b"));
    for t in [&a, &a, &b] {
        let r = post(
            &gw.url("/mcp/s"),
            &[("authorization", &format!("Bearer {t}"))],
            INIT,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let fetches = seen.lock().unwrap().clone();
    assert_eq!(fetches.len(), 2, "one exchange per caller: {fetches:?}");
    assert!(fetches[0].1.contains(&format!("subject_token={a}")));
    assert!(fetches[1].1.contains(&format!("subject_token={b}")));
    let sent: Vec<String> = up
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| h.get("authorization").unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sent,
        vec![
            "Bearer exchanged-1",
            "Bearer exchanged-1",
            "Bearer exchanged-2"
        ]
    );
    // A caller without a JWT has nothing to exchange: nothing goes upstream.
    let r = post(&gw.url("/mcp/open"), &[], INIT).await;
    assert_eq!(r.code(), "MCP-003");
    assert_eq!(up.count(), 3);
    gw.stop();
}
