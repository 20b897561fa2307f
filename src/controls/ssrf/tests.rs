use super::*;

fn cfg() -> SsrfConfig {
    SsrfConfig::default()
}

async fn refused(url: &str) -> String {
    match check_url(&cfg(), url, "/url").await {
        Err(e) => e.reason().to_owned(),
        Ok(()) => panic!("{url} was allowed"),
    }
}

#[tokio::test]
async fn every_spelling_of_loopback_and_metadata_is_refused() {
    for url in [
        "http://127.0.0.1/",
        "http://127.0.0.1:80/admin",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://127.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[::127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://0/",
        "http://[::]/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://user:pass@127.0.0.1/",
        "HTTP://LOCALHOST/",
    ] {
        assert_eq!(refused(url).await, "ssrf_address", "{url}");
    }
    // Refused either way: as loopback where the resolver knows the name, unresolvable where not.
    refused("http://localhost./").await;
}

#[tokio::test]
async fn schemes_ports_and_domains() {
    for url in [
        "file:///etc/passwd",
        "gopher://example.com/",
        "ftp://1.1.1.1/",
        "not a url",
        "//1.1.1.1/",
    ] {
        assert_eq!(refused(url).await, "ssrf_scheme", "{url}");
    }
    assert_eq!(refused("http://1.1.1.1:22/").await, "ssrf_port");
    assert_eq!(refused("https://1.1.1.1:8443/").await, "ssrf_port");
    let mut c = cfg();
    c.deny_domains = vec!["evil.example".into()];
    let r = check_url(&c, "http://api.evil.example/", "/u").await;
    assert_eq!(r.map_err(|e| e.reason()), Err("ssrf_domain"));
    let r = check_url(&c, "http://notevil.example/", "/u").await;
    assert_ne!(r.map_err(|e| e.reason()), Err("ssrf_domain"));
    c.allow_domains = vec!["api.example.com".into()];
    let r = check_url(&c, "http://other.example.com/", "/u").await;
    assert_eq!(r.map_err(|e| e.reason()), Err("ssrf_domain"));
}

#[tokio::test]
async fn public_addresses_pass_and_allow_cidrs_exempt() {
    for url in [
        "http://1.1.1.1/",
        "https://93.184.216.34/x?y=1",
        "http://[2606:4700::1111]/",
    ] {
        assert_eq!(check_url(&cfg(), url, "/u").await, Ok(()), "{url}");
    }
    assert_eq!(
        check_url(&cfg(), "data:text/plain;base64,aGVsbG8=", "/u").await,
        Ok(())
    );
    let mut c = cfg();
    c.allow_cidrs = vec!["10.1.0.0/16".parse().unwrap()];
    assert_eq!(check_url(&c, "http://10.1.2.3/", "/u").await, Ok(()));
    assert!(check_url(&c, "http://10.2.0.1/", "/u").await.is_err());
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_refused() {
    assert_eq!(
        refused("http://no-such-host.invalid/").await,
        "ssrf_unresolvable"
    );
}

#[tokio::test]
async fn arguments_by_schema_format_and_config() {
    let tool = serde_json::json!({"name": "fetch", "inputSchema": {"type": "object",
        "properties": {"url": {"type": "string", "format": "uri"}, "note": {"type": "string"}}}});
    let configured = vec!["mirrors".to_owned()];
    let names = url_args(&tool, &configured);
    assert_eq!(names, ["mirrors", "url"]);
    let args = serde_json::json!({"url": "http://1.1.1.1/", "note": "http://127.0.0.1/",
        "mirrors": ["http://1.1.1.1/", "http://[::1]/"]});
    let e = check_args(&cfg(), &names, &args).await.unwrap_err();
    assert_eq!((e.reason(), e.path()), ("ssrf_address", "/mirrors/1"));
    let mut off = cfg();
    off.enabled = false;
    assert_eq!(check_args(&off, &names, &args).await, Ok(()));
}
