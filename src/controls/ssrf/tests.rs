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

mod own_fetches {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};

    use super::super::fetch::{fetch_policy, Fetcher};
    use super::*;

    /// A server on 127.0.0.1 answering every request with `answer(path)`, recording the
    /// `Authorization` header it got.
    async fn server(
        answer: fn(&str) -> (u16, Option<String>),
    ) -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let log = log.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_owned());
                            log.lock().unwrap().push(auth);
                            let (status, location) = answer(req.uri().path());
                            let mut r = Response::builder().status(status);
                            if let Some(l) = location {
                                r = r.header("location", l);
                            }
                            let resp = r
                                .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
                                .unwrap();
                            async move { Ok::<_, std::convert::Infallible>(resp) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, seen)
    }

    /// The policy of a gateway whose IdP is at `addr` (its network allowed, as an operator
    /// with an internal IdP would).
    fn fetcher(addr: SocketAddr) -> Fetcher {
        let ssrf = SsrfConfig {
            allow_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
            ..Default::default()
        };
        let url: http::Uri = format!("http://{addr}/jwks").parse().unwrap();
        Fetcher::new(fetch_policy(&ssrf, [url].iter()), Duration::from_secs(2))
    }

    fn get(url: &str) -> Request<Full<Bytes>> {
        Request::get(url)
            .header("authorization", "Basic c2VjcmV0")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    #[tokio::test]
    async fn blocked_targets_are_refused_before_and_at_connect() {
        let f = Fetcher::new(SsrfConfig::default(), Duration::from_secs(2));
        for url in [
            "http://127.0.0.1/jwks",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:10.0.0.1]/",
            "http://0x7f000001/",
            "http://10.1.2.3/",
            "ftp://example.com/keys",
            "http://example.com:8080/",
        ] {
            let e = f.send(get(url)).await.unwrap_err();
            assert!(
                e.contains("blocked") || e.contains("scheme") || e.contains("port"),
                "{url}: {e}"
            );
        }
        // A name is checked when it resolves, and the connection goes only to what was
        // checked: `localhost` is loopback.
        let e = f.send(get("http://localhost/jwks")).await.unwrap_err();
        assert!(e.contains("blocked address"), "{e}");
    }

    #[tokio::test]
    async fn redirects_are_checked_again_and_carry_no_credentials_elsewhere() {
        // The allowed server redirects into the loopback network outside the allowed /32
        // (127.0.0.2), then to an allowed port of its own, then to another allowed server.
        let (other, other_seen) = server(|_| (200, None)).await;
        let (addr, seen) = server(|p| match p {
            "/inside" => (302, Some("http://127.0.0.2/admin".into())),
            "/own" => (301, Some("/final".into())),
            "/loop" => (302, Some("/loop".into())),
            _ => (200, None),
        })
        .await;
        let ssrf = SsrfConfig {
            allow_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
            ..Default::default()
        };
        let urls: Vec<http::Uri> = [addr, other]
            .iter()
            .map(|a| format!("http://{a}/").parse().unwrap())
            .collect();
        let f = Fetcher::new(fetch_policy(&ssrf, urls.iter()), Duration::from_secs(2));

        let e = f
            .send(get(&format!("http://{addr}/inside")))
            .await
            .unwrap_err();
        assert!(e.contains("127.0.0.2"), "{e}");
        let r = f.send(get(&format!("http://{addr}/own"))).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.into_body().collect().await.unwrap().to_bytes(),
            "{\"ok\":true}"
        );
        let e = f
            .send(get(&format!("http://{addr}/loop")))
            .await
            .unwrap_err();
        assert!(e.contains("redirects"), "{e}");

        // To another origin: followed, without the Authorization header.
        static OTHER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        OTHER.set(format!("http://{other}/keys")).unwrap();
        let (hop, _) = server(|_| (307, Some(OTHER.get().unwrap().clone()))).await;
        let mut with_hop = urls.clone();
        with_hop.push(format!("http://{hop}/").parse().unwrap());
        let f = Fetcher::new(fetch_policy(&ssrf, with_hop.iter()), Duration::from_secs(2));
        assert_eq!(
            f.send(get(&format!("http://{hop}/x")))
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(*other_seen.lock().unwrap(), vec![None]);
        assert!(seen
            .lock()
            .unwrap()
            .iter()
            .all(|a| a.as_deref() == Some("Basic c2VjcmV0")));

        // A POST (a token request) never follows one.
        let post = Request::post(format!("http://{addr}/own"))
            .body(Full::new(Bytes::from_static(b"grant_type=x")))
            .unwrap();
        let e = f.send(post).await.unwrap_err();
        assert!(e.contains("not followed"), "{e}");
        let _ = fetcher(addr);
    }

    #[tokio::test]
    async fn a_discovered_jwks_uri_is_held_to_the_same_rules() {
        // Ports a configured URL names are allowed; one a document names is not.
        let f = fetcher("127.0.0.1:9443".parse().unwrap());
        assert!(f
            .check(&"http://127.0.0.1:9443/jwks".parse().unwrap())
            .is_ok());
        let e = f
            .check(&"http://127.0.0.1:6379/".parse().unwrap())
            .unwrap_err();
        assert!(e.contains("port"), "{e}");
        let e = f
            .check(&"http://169.254.169.254/".parse().unwrap())
            .unwrap_err();
        assert!(e.contains("blocked"), "{e}");
    }
}
