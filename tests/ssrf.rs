//! The SSRF guard through the running gateway: a URL argument (schema `format: uri`, or named
//! in config) that spells loopback, a private network or the cloud metadata address in any
//! encoding is refused with MCP-016 before the upstream sees the call; a public address passes.
//! A configured URL the gateway itself would fetch from a blocked address stops the start.

mod support;

use std::process::Command;

use serde_json::json;
use support::hub::*;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn internal_addresses_in_every_encoding_never_reach_the_upstream() {
    let (up, addr) = Scripted::start().await;
    let cfg =
        format!("[[upstream]]\nname = \"scripted\"\nurl = \"http://{addr}/mcp\"\nhub = false\n");
    let mut gw = Gateway::start("ssrf-proxied", &cfg);
    let c = Client::connect(gw.url("/mcp/scripted"), None).await;
    let call = |url: &str| {
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "fetch", "arguments": {"url": url}}})
        .to_string()
    };
    let before = up.count();
    let attacks = [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://0.0.0.0/",
        "http://10.0.0.8/",
        "http://localhost/",
        "file:///etc/passwd",
        "http://1.1.1.1:6379/",
    ];
    for url in attacks {
        let r = c.raw(&call(url)).await;
        assert_eq!(r.status, 200, "{url}: {:?}", r.body);
        let v = r.json();
        assert_eq!(v["error"]["code"], -32602, "{url}: {v}");
        assert_eq!(v["error"]["data"]["code"], "MCP-016", "{url}: {v}");
        assert_eq!(v["error"]["data"]["path"], "/url", "{url}: {v}");
    }
    assert_eq!(up.count(), before, "the upstream saw none of them");
    let r = c.raw(&call("https://1.1.1.1/dns-query")).await;
    assert_eq!(r.json()["result"]["ok"], true, "{:?}", r.body);
    assert_eq!(up.count(), before + 1);
    gw.stop();
    let rows: Vec<_> = gw
        .audit_rows()
        .into_iter()
        .filter(|r| r.2 == "ssrf")
        .map(|r| (r.1, r.3))
        .collect();
    assert_eq!(rows.len(), attacks.len(), "{rows:?}");
    assert!(rows.iter().all(|(d, _)| d == "deny"));
    assert_eq!(
        rows.iter().filter(|(_, r)| r == "ssrf_address").count(),
        attacks.len() - 2
    );
    assert!(rows.iter().any(|(_, r)| r == "ssrf_scheme"));
    assert!(rows.iter().any(|(_, r)| r == "ssrf_port"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_checks_arguments_config_names_as_urls() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let cfg = fixture(
        "fx",
        &python,
        "[[upstream.tools]]\nname = \"remember\"\nurl_args = [\"value\"]\n",
    );
    let mut gw = Gateway::start("ssrf-hub", &cfg);
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let r = c
        .call(
            "fx__remember",
            json!({"key": "k", "value": "http://0x7f.1/"}),
        )
        .await;
    assert_eq!(r, "error:MCP-016");
    c.call(
        "fx__remember",
        json!({"key": "k", "value": "http://1.1.1.1/"}),
    )
    .await;
    assert_eq!(
        c.call("fx__recall", json!({"key": "k"})).await,
        "http://1.1.1.1/"
    );
    gw.stop();
}

/// The gateway's own fetches are guarded too: a configured JWKS URL or token endpoint at the
/// cloud metadata address or on loopback stops the start, with the reason; allowing the
/// network lets it start.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_own_fetches_are_guarded() {
    let dir = tmpdir("ssrf-own");
    for (name, cfg, blocked) in [
        (
            "jwks",
            "[auth]\nmethods = [\"jwt\"]\n[auth.jwt]\nissuer = [\"https://idp.test\"]\naudience = [\"gw\"]\n\
             jwks_url = \"http://169.254.169.254/latest/jwks\"\n",
            "169.254.169.254",
        ),
        (
            "token",
            "[[upstream]]\nname = \"t\"\nurl = \"http://127.0.0.1:9/mcp\"\n[upstream.oauth]\n\
             token_url = \"http://2130706433:8080/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
            "127.0.0.1",
        ),
    ] {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\n{}\n[[upstream]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/mcp\"\n{}",
                dir.join("data").display().to_string(),
                cfg,
                ALLOW_ALL
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}: must not start");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(blocked) && err.contains("blocked address"),
            "{name}: {err}"
        );
    }
}
